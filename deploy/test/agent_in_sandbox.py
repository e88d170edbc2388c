#!/usr/bin/env python3
"""rodiff's node agent run the way deploy/daemonset.yaml runs it, against the sandbox's containerd.

Run inside `RODIFF_CONTAINERD=1 scripts/sandbox.sh run -- …` (`make test-deploy` does), with
PyYAML (the deploy virtualenv has it). Everything the DaemonSet says is read from the manifest,
never copied by hand: the image's command and arguments, the user, the capabilities, the read-only
root, no privilege escalation, every volume mount (read-only or not, propagation), the port, the
probes and the Prometheus annotations.

The image is made here, without a registry: `docker import` of a tar holding target/debug/rodiff
($RODIFF_BIN) at the manifest's command path and the shared libraries `ldd` lists. It runs in the
sandbox's dockerd (default seccomp profile) as `docker run --read-only --cap-drop ALL --cap-add …`,
each hostPath translated to the sandbox's equivalent (translations() below): the sandbox's containerd
socket directory where the manifest mounts /run/containerd (its path is named by the arguments),
its root at /host/<the sandbox's path> (its paths are reported by containerd), the sandbox's /proc
at /host/proc, a fresh state directory.

A container started with `ctr run` in the manifest's containerd namespace writes files, removes
and re-creates a directory of the image (an opaque directory: its marker is a trusted.* extended
attribute), writes a 0700 directory of uid 1000 with a script in it (access times set to 2000),
and holds an O_TMPFILE file open. Then:
 1. the CLI in the manifest's confinement (same image, user, capabilities, mounts and global
    arguments; `diff` instead of `agent`) gives what `rodiff diff --format json` gives outside;
 2. the agent with the manifest's arguments: the readiness probe becomes 200, the liveness probe
    is 200, /v1/containers lists the container, scanned without error, its
    /v1/containers/{id}/diff?format=json equals the CLI's diff run outside, its profile has every
    path of that diff, its k8s plan is served, /metrics (the scrape annotations' port and path) is
    Prometheus text of rodiff_ samples, its log names no denied operation (EACCES, EPERM, EROFS),
    the state directory holds rodiff.db, and no access time changed in the layer;
 3. restarted (same mounts, as the kubelet restarts a container), it is ready again and has the
    container's profile back from the state directory (same first_seen).
Set RODIFF_AGENT_LOG=1 to see the agent's log; RODIFF_MANIFEST to test another manifest.
Exit status 0 when all hold; each failure is printed with what was expected and what came.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = Path(os.environ.get("RODIFF_MANIFEST", ROOT / "deploy" / "daemonset.yaml"))
RODIFF = Path(os.environ.get("RODIFF_BIN", ROOT / "target" / "debug" / "rodiff"))
TAG = f"rodiff-agent-test:{os.getpid()}"
AGENT_WAIT = float(os.environ.get("RODIFF_AGENT_WAIT", "120"))


def log(msg):
    print(f"agent_in_sandbox: {msg}", file=sys.stderr, flush=True)


def fail(msg):
    log(f"FAIL: {msg}")
    sys.exit(1)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        fail(f"{shlex.join(map(str, cmd))} exited {r.returncode}\n{r.stdout}{r.stderr}")
    return r


# ------------------------------------------------------------------------------------------------
# The manifest
# ------------------------------------------------------------------------------------------------


def load_manifest():
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    daemonsets = [d for d in docs if d.get("kind") == "DaemonSet"]
    if len(daemonsets) != 1:
        fail(f"{MANIFEST}: expected one DaemonSet, found {len(daemonsets)}")
    ds = daemonsets[0]
    pod = ds["spec"]["template"]["spec"]
    if len(pod["containers"]) != 1 or pod.get("initContainers"):
        fail("the test knows how to run a pod of one container")
    return ds, pod, pod["containers"][0]


def split_args(args):
    """(global arguments, subcommand, subcommand arguments): the global ones come before `agent`."""
    if "agent" not in args:
        fail(f"the manifest's args do not run `agent`: {args}")
    i = args.index("agent")
    return args[:i], args[i], args[i + 1 :]


def arg_value(args, name, default=None):
    """The value of `--name=V` or `--name V` in args."""
    for i, a in enumerate(args):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return default


def port_number(container, port):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    fail(f"no container port named {port!r}")


# ------------------------------------------------------------------------------------------------
# The sandbox's equivalents of the node's paths
# ------------------------------------------------------------------------------------------------


def containerd_root(socket):
    """The sandbox containerd's root, from its config (scripts/sandbox.sh start_containerd)."""
    config = Path(socket).parent / "config.toml"
    m = re.search(r'^root\s*=\s*"([^"]+)"', config.read_text(), re.M)
    if not m:
        fail(f"no root in {config}")
    return m.group(1)


def translations(state_dir):
    """hostPath on a node -> (path in the sandbox, how the agent finds it there).

    "named": the manifest's arguments name a path below it (the socket): mounted where the manifest
    mounts it, so the arguments stay as they are. "reported": the runtime reports paths below it
    (layers): mounted at <host-root>/<the sandbox's path>, where the agent looks for them.
    """
    socket = os.environ["CONTAINERD_ADDRESS"]
    return {
        "/proc": ("/proc", "named"),  # the sandbox's PID namespace: its containerd's task pids
        "/run/containerd": (str(Path(socket).parent), "named"),
        "/var/lib/containerd": (containerd_root(socket), "reported"),
        "/var/lib/rodiff-agent": (state_dir, "named"),
    }


def make_shared(path):
    """Makes the mount at path shared, as a node's / is (systemd): a slave mount's source must be.

    The sandbox's mount namespace is private; a bind of the directory onto itself, made shared,
    lives and dies with it."""
    prop = run(["findmnt", "-n", "-o", "TARGET,PROPAGATION", "-T", path]).stdout.split()
    if prop[0] == path and "shared" in prop[1]:
        return
    run(["mount", "--bind", path, path])
    run(["mount", "--make-rshared", path])


def docker_run_options(pod, container, state_dir):
    """`docker run` options equivalent to the pod's security settings and volumes."""
    sc = container.get("securityContext", {})
    psc = pod.get("securityContext", {})
    opts = []
    if sc.get("privileged"):
        fail("the manifest asks for a privileged container")
    if sc.get("readOnlyRootFilesystem"):
        opts.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        opts += ["--security-opt", "no-new-privileges"]
    caps = sc.get("capabilities", {})
    for c in caps.get("drop", []):
        opts += ["--cap-drop", c]
    for c in caps.get("add", []):
        opts += ["--cap-add", c]
    seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
    if seccomp not in (None, "RuntimeDefault"):
        fail(f"the test knows RuntimeDefault seccomp only, not {seccomp}")  # docker's default
    user = sc.get("runAsUser", psc.get("runAsUser"))
    group = sc.get("runAsGroup", psc.get("runAsGroup"))
    if user is not None:
        opts += ["--user", f"{user}:{group if group is not None else user}"]

    global_args, _, _ = split_args(container["args"])
    host_root = arg_value(global_args, "--host-root", "/")
    table = translations(state_dir)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        v = volumes[m["name"]]
        if "hostPath" not in v:
            fail(f"volume {v['name']}: the test translates hostPath volumes only")
        host = v["hostPath"]["path"]
        if host not in table:
            fail(f"volume {v['name']}: no sandbox equivalent of hostPath {host} (add it to translations())")
        source, how = table[host]
        if how == "named":
            target = m["mountPath"]
        else:
            if m["mountPath"] != os.path.join(host_root, host.lstrip("/")):
                fail(f"volume {v['name']}: mounted at {m['mountPath']}, not below --host-root {host_root}")
            target = os.path.join(host_root, source.lstrip("/"))
        spec = f"type=bind,src={source},dst={target}"
        if m.get("readOnly"):
            spec += ",readonly"
        propagation = m.get("mountPropagation", "None")
        if propagation != "None":
            make_shared(source)
        spec += {"None": "", "HostToContainer": ",bind-propagation=rslave", "Bidirectional": ",bind-propagation=rshared"}[propagation]
        opts += ["--mount", spec]
    # The containerd socket the arguments name must be where the translated mount puts it.
    socket = arg_value(global_args, "--address")
    if socket:
        for host, (source, how) in table.items():
            rel = os.path.relpath(socket, host)
            if not rel.startswith("..") and how == "named" and host != "/proc":
                if not Path(source, rel).is_socket():
                    fail(f"--address {socket}: no socket at {source}/{rel} in the sandbox")
    return opts


# ------------------------------------------------------------------------------------------------
# The image: the binary and its shared libraries
# ------------------------------------------------------------------------------------------------


def build_image(command_path, workdir):
    out = run(["ldd", str(RODIFF)]).stdout
    libs = set()
    for line in out.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.add(m.group(1))
    tar_path = Path(workdir) / "image.tar"
    with tarfile.open(tar_path, "w") as tar:
        def add(src, dst, mode):
            info = tar.gettarinfo(os.path.realpath(src), arcname=dst.lstrip("/"))
            info.mode, info.uid, info.gid, info.uname, info.gname = mode, 0, 0, "root", "root"
            with open(os.path.realpath(src), "rb") as f:
                tar.addfile(info, f)

        add(RODIFF, command_path, 0o755)
        for lib in sorted(libs):
            add(lib, lib, 0o755)
    run(["docker", "import", str(tar_path), TAG])
    log(f"image {TAG}: {command_path} and {', '.join(sorted(libs))}")


# ------------------------------------------------------------------------------------------------
# HTTP in the agent container's network namespace (the sandbox's containers have no bridge)
# ------------------------------------------------------------------------------------------------

FETCH = """
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=30)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception as e:
    code, body = 0, repr(e).encode()
sys.stdout.write(str(code) + "\\n")
sys.stdout.flush()
sys.stdout.buffer.write(body)
"""


def http_get(pid, port, path):
    r = run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", FETCH, f"http://127.0.0.1:{port}{path}"])
    code, _, body = r.stdout.partition("\n")
    return int(code), body


def container_pid(name):
    return int(run(["docker", "inspect", "-f", "{{.State.Pid}}", name]).stdout.strip())


def wait_for(what, timeout, probe):
    """Calls probe() until it returns (True, x); fails with the last answer after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        ok, last = probe()
        if ok:
            return last
        if time.monotonic() > deadline:
            fail(f"{what} within {timeout:.0f} s; last: {last}")
        time.sleep(1)


# ------------------------------------------------------------------------------------------------


def main():
    for var in ("RODIFF_SANDBOX", "CONTAINERD_ADDRESS", "RODIFF_RUNC_ROOT"):
        if var not in os.environ:
            fail(f"${var} is not set: run me in `RODIFF_CONTAINERD=1 scripts/sandbox.sh run -- …`")
    if not RODIFF.exists():
        fail(f"{RODIFF} is missing: `cargo build` first")

    ds, pod, container = load_manifest()
    command, args = container["command"], container["args"]
    global_args, sub, agent_args = split_args(args)
    namespaces = arg_value(agent_args, "--namespaces", "default").split(",")
    ns = namespaces[0]
    address = os.environ["CONTAINERD_ADDRESS"]
    runc_root = os.environ["RODIFF_RUNC_ROOT"]
    workdir = tempfile.mkdtemp(prefix="deploy-test.", dir=os.environ["RODIFF_SANDBOX"])
    state_dir = tempfile.mkdtemp(prefix="state.", dir=workdir)
    os.chmod(state_dir, 0o755)  # as kubelet makes a DirectoryOrCreate hostPath

    log(f"manifest {MANIFEST}: {shlex.join(command + args)}")
    build_image(command[0], workdir)
    opts = docker_run_options(pod, container, state_dir)
    log("docker run " + shlex.join(opts))

    # A containerd container in the manifest's namespace, on the overlayfs snapshotter (Kubernetes'
    # default): files added, a directory of the image removed and re-created (opaque: its marker
    # is a trusted.* xattr), a 0700 directory of another user, an O_TMPFILE file held open.
    cid = f"rodiff-deploy-{os.getpid()}"
    script = ("mkdir -p /srv/data && echo hello >/srv/data/file && "
              "rm -rf /usr && mkdir -p /usr/local && echo x >/usr/local/new && "
              "mkdir -p /home/u/private && echo s >/home/u/private/secret && chown -R 1000:1000 /home/u && "
              "chmod 0700 /home/u/private && chmod 0600 /home/u/private/secret && "
              "printf '#!/bin/sh\\n' >/home/u/private/run.sh && chown 1000:1000 /home/u/private/run.sh && "
              "touch -a -d 2000-01-01 /home/u/private /home/u/private/run.sh && "
              "(tmpfile-holder hold /tmp &) && sleep 1 && touch /done && exec sleep 100000")
    image = "docker.io/rodiff-test/busybox:latest"
    ctr = ["ctr", "-a", address, "-n", ns]
    r = subprocess.run(ctr + ["run", "-d", "--runc-root", runc_root, "--snapshotter", "overlayfs", image, cid, "sh", "-c", script],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        fail(f"ctr run: {r.stderr}")
    wait_for("the container's writes", 30,
             lambda: (run(ctr + ["tasks", "exec", "--exec-id", "probe", cid, "test", "-f", "/done"], check=False).returncode == 0, "no /done"))

    outside = run([str(RODIFF), "--runtime", "containerd", "--address", address, "-n", ns, "diff", cid, "--format", "json"])
    expected = json.loads(outside.stdout)
    paths = {c["path"] for c in expected}
    for p in ("/srv/data/file", "/usr/share", "/home/u/private/secret", "/tmp"):
        if p not in paths:
            fail(f"the CLI outside does not report {p} (the test's container changed?): {sorted(map(str, paths))}")
    log(f"outside: {len(expected)} changes")

    # 1. The CLI in the manifest's confinement.
    name = f"rodiff-cli-{os.getpid()}"
    cli = run(["docker", "run", "--rm", "--name", name, "--network", "none", *opts, "--entrypoint", command[0], TAG,
               *command[1:], *global_args, "--runtime", "containerd", "-n", ns, "diff", cid, "--format", "json"], check=False)
    if cli.returncode != 0:
        fail(f"the CLI in the manifest's confinement exited {cli.returncode}: {cli.stderr}")
    if json.loads(cli.stdout) != expected:
        fail(f"the CLI in the manifest's confinement differs from outside:\n{cli.stdout}\n--- outside:\n{outside.stdout}")
    log("1. CLI in the manifest's confinement = CLI outside")

    # 2. The agent, with exactly the manifest's command and arguments.
    agent = f"rodiff-agent-{os.getpid()}"
    run(["docker", "run", "-d", "--name", agent, "--network", "none", *opts, "--entrypoint", command[0], TAG, *command[1:], *args])
    try:
        check_agent(agent, container, ds, ns, cid, expected, state_dir)
        # No access time changed in the layer, though the agent runs without CAP_FOWNER (which
        # O_NOATIME needs on others' files) and reads the head of the executable (drift): the
        # kernel updates no atime through a read-only mount.
        root = containerd_root(address)
        upper = [p for p in Path(root).glob("io.containerd.snapshotter.v1.overlayfs/snapshots/*/fs/home/u/private")]
        if len(upper) != 1:
            fail(f"cannot find the container's upper /home/u/private: {upper}")
        for p in (upper[0], upper[0] / "run.sh"):
            if time.gmtime(p.stat().st_atime).tm_year != 2000:
                fail(f"{p}: its access time changed: {time.ctime(p.stat().st_atime)}")
        log("   no access time changed in the layer (a 0700 directory and an executable of uid 1000)")
    except SystemExit:
        r = run(["docker", "logs", "--tail", "40", agent], check=False)
        log(f"agent's log:\n{r.stdout}{r.stderr}")
        raise
    finally:
        if os.environ.get("RODIFF_AGENT_LOG"):
            r = run(["docker", "logs", agent], check=False)
            log(f"agent log:\n{r.stdout}{r.stderr}")
        run(["docker", "rm", "-f", agent], check=False)
        run(ctr + ["tasks", "rm", "-f", cid], check=False)
        run(ctr + ["containers", "rm", cid], check=False)
    log("PASS")


def check_agent(agent, container, ds, ns, cid, expected, state_dir):
    def pid():
        state = run(["docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", agent]).stdout.split()
        if state[0] != "running":
            fail(f"the agent is {state[0]}, exit code {state[1]}")
        return container_pid(agent)

    def get(probe_or_path, port=None):
        if isinstance(probe_or_path, dict):
            h = probe_or_path["httpGet"]
            return http_get(pid(), port_number(container, h["port"]), h["path"])
        return http_get(pid(), port, probe_or_path)

    ready = container["readinessProbe"]
    live = container["livenessProbe"]
    port = port_number(container, ready["httpGet"]["port"])
    wait_for("readiness probe 200", 60, lambda: (lambda r: (r[0] == 200, r))(get(ready)))
    code, body = get(live)
    if code != 200:
        fail(f"liveness probe {live['httpGet']['path']}: {code} {body}")
    log("2. readiness and liveness probes: 200")

    def entry():
        code, body = get("/v1/containers", port)
        if code != 200:
            return None, (code, body[:2000])
        found = [c for c in json.loads(body)["containers"] if c["id"] == cid]
        return (found[0] if found else None), body[:2000]

    def scanned():
        e, body = entry()
        return e is not None and e["last_scan"] is not None, e or body

    # Listed, and scanned by the agent's own interval scans, without an error.
    e = wait_for(f"/v1/containers listing {cid}, scanned", AGENT_WAIT, scanned)
    if e["last_error"] is not None or e["namespace"] != ns or "/home/u/private/run.sh" not in e["drift"]["executables"]:
        fail(f"/v1/containers: {e}")
    log(f"   /v1/containers lists {cid} (namespace {e['namespace']}), scanned without error, drift {e['drift']}")

    def same_diff():
        code, body = get(f"/v1/containers/{cid}/diff?format=json", port)
        if code != 200:
            return False, (code, body[:2000])
        try:
            got = json.loads(body)
        except ValueError:
            return False, body[:2000]
        return got == expected, body[:4000]

    wait_for(f"/v1/containers/{cid}/diff?format=json equal to the CLI's", AGENT_WAIT, same_diff)
    log(f"   /v1/containers/{{id}}/diff?format=json = `rodiff --runtime containerd -n {ns} diff {cid} --format json`")

    notes = ds["spec"]["template"]["metadata"].get("annotations", {})
    if notes.get("prometheus.io/scrape") != "true":
        fail("no prometheus.io/scrape: \"true\" annotation")
    code, body = get(notes.get("prometheus.io/path", "/metrics"), int(notes["prometheus.io/port"]))
    samples = [l for l in body.splitlines() if l and not l.startswith("#")]
    if code != 200 or not samples or not all(l.startswith("rodiff_") for l in samples):
        fail(f"/metrics: {code}, samples not all rodiff_*: {body[:2000]}")
    log(f"   {notes.get('prometheus.io/path')} on the annotated port: {len(samples)} rodiff_ samples")

    code, body = get(f"/v1/containers/{cid}/profile", port)
    missing = code == 200 and {json.dumps(c["path"]) for c in expected} - {json.dumps(c["path"]) for c in json.loads(body)}
    if code != 200 or missing:
        fail(f"/v1/containers/{cid}/profile: {code}, without {missing}: {body[:2000]}")
    code, body = get(f"/v1/containers/{cid}/plan?format=k8s", port)
    if code != 200:
        fail(f"/v1/containers/{cid}/plan?format=k8s: {code} {body[:2000]}")
    log("   its profile has every path of the diff; its k8s plan: 200")

    # The confinement denied the agent nothing: no EACCES, EPERM or EROFS in its log.
    logs = run(["docker", "logs", agent])
    text = logs.stdout + logs.stderr
    for denied in ("Permission denied", "Operation not permitted", "Read-only file system"):
        if denied in text:
            fail(f"the agent's log says {denied!r}:\n{text[-4000:]}")
    log(f"   its log names no denied operation")

    if not (Path(state_dir) / "rodiff.db").exists():
        fail(f"no rodiff.db in the state directory: {os.listdir(state_dir)}")
    log(f"   state directory: {sorted(os.listdir(state_dir))}")

    # The container restarts (as the kubelet restarts it, same mounts): the profile is restored
    # from the state directory, first seen when it was first seen.
    before = entry()[0]
    run(["docker", "restart", "-t", "10", agent])
    wait_for("readiness probe 200 after a restart", 60, lambda: (lambda r: (r[0] == 200, r))(get(ready)))
    after = wait_for(f"{cid} listed after a restart", AGENT_WAIT, lambda: (lambda e: (e[0] is not None, e[0] or e[1]))(entry()))
    if after["first_seen"] != before["first_seen"] or after["diffs"] < before["diffs"]:
        fail(f"the profile was not restored from the state directory: before {before}, after {after}")
    log(f"3. after a restart: ready, {cid} restored (first seen {after['first_seen']}, {after['diffs']} diffs)")


if __name__ == "__main__":
    main()
