//! The oracle corpus: a fixture image layer and the file operations a container's application may
//! do to it. `docker_oracle.rs` runs it in Docker containers, `containerd.rs` in containerd
//! containers on each snapshotter, and both compare with `docker diff`; the Python tests run the
//! same scripts (`tests/corpus/`).

/// The image layer the corpus changes: made with `docker commit`, so it is a real image layer.
pub const FIXTURE: &str = include_str!("../corpus/fixture.sh");

/// The corpus: every operation a container's application may do to its filesystem.
pub const CORPUS: &str = include_str!("../corpus/ops.sh");
