//! The library reads no environment variable: the CLI maps `$DOCKER_HOST`, `$CONTAINERD_ADDRESS`
//! and `$CONTAINERD_NAMESPACE` onto `ClientOptions`, an embedder passes what it wants. One test in
//! its own binary, so that setting variables races with no other test.

use rodiff::resolve::{DEFAULT_CONTAINERD_ADDRESS, DEFAULT_DOCKER_HOST};
use rodiff::{Client, ClientOptions, Error, Runtime, Stop, Target};

#[test]
fn a_client_ignores_the_environment() {
    let here = tempfile::tempdir().unwrap();
    let planted = |name: &str| format!("unix://{}", here.path().join(name).display());
    // SAFETY: this binary has one test, and it sets the variables before starting any thread.
    unsafe {
        std::env::set_var("DOCKER_HOST", planted("env-docker.sock"));
        std::env::set_var("CONTAINERD_ADDRESS", planted("env-containerd.sock"));
        std::env::set_var("CONTAINERD_NAMESPACE", "from-env");
        std::env::set_var("RAYON_NUM_THREADS", "13");
    }
    let client = Client::new(ClientOptions::default()).unwrap();
    assert_eq!(client.options().docker_endpoint(), DEFAULT_DOCKER_HOST);
    assert_eq!(client.options().containerd_socket(), DEFAULT_CONTAINERD_ADDRESS);
    assert_eq!(client.options().containerd_namespace(), "default");
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(client.walkers().threads(), cpus, "walker threads from the CPUs, not RAYON_NUM_THREADS");

    // Whatever answers at the default endpoints (a daemon or nothing), the planted ones are not asked.
    let missing = Target::from("rodiff-no-such-container-7f3a");
    match client.resolve(&missing, &Stop::default()).unwrap_err() {
        Error::RuntimeUnavailable { endpoint, .. } | Error::ContainerNotFound { endpoint, .. } => assert_eq!(endpoint, DEFAULT_DOCKER_HOST),
        e => panic!("unexpected error: {e}"),
    }
    let containerd = Client::new(ClientOptions { runtime: Runtime::Containerd, ..Default::default() }).unwrap();
    match containerd.resolve(&missing, &Stop::default()).unwrap_err() {
        Error::RuntimeUnavailable { endpoint, .. } | Error::ContainerNotFound { endpoint, .. } => {
            assert_eq!(endpoint, DEFAULT_CONTAINERD_ADDRESS)
        }
        e => panic!("unexpected error: {e}"),
    }
}
