#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/seeds/<target>/), small real inputs:
mountinfo and cgroup lines as the kernel writes them, containerd's Mounts and container records
as protobuf, a docker inspect reduced to what rodiff reads, btrfs search buffers and items laid
out as the unit tests lay them out, fanotify events as the kernel lays them out. Run from fuzz/."""
import json, os, struct

OUT = "seeds"

def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# mountinfo / cgroup
put("mountinfo", "host", """22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334076k,nr_inodes=3083519,mode=755
26 24 0:24 / /dev/pts rw,relatime shared:3 master:1 - devpts devpts rw,mode=600,ptmxmode=000
""")
put("mountinfo", "overlay", "812 790 0:88 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/ABC:/var/lib/docker/overlay2/l/DEF,upperdir=/var/lib/docker/overlay2/0123/diff,workdir=/var/lib/docker/overlay2/0123/work\n")
put("mountinfo", "escaped", "40 30 8:1 /with\\040space\\012nl /mnt/a\\134b rw - ext4 /dev/sda\\0401 rw\n41 30 0:45 /@/sub//deleted /mnt/btrfs rw - btrfs  rw,subvolid=256,subvol=/@\n")
put("mountinfo", "cgroup_v1", "9:name=systemd:/docker/0123abcd\n4:memory:/docker/0123abcd\n1:cpu,cpuacct:/docker/0123abcd\n0::/\n")
put("mountinfo", "cgroup_v2", "0::/system.slice/docker-0123abcd.scope\n")

# overlay options: redirect values, and mounts (type \t source \t options split by \x1f)
put("overlay_options", "redirect_abs", "/usr/lib/x")
put("overlay_options", "redirect_rel", "oldname")
put("overlay_options", "redirect_hostile", "/../../etc")
put("overlay_options", "mount_overlay", "overlay\toverlay\t" + "\x1f".join(["index=off", "workdir=/var/lib/containerd/s/9/work", "upperdir=/var/lib/containerd/s/9/fs", "lowerdir=/var/lib/containerd/s/8/fs:/var/lib/containerd/s/7/fs"]))
put("overlay_options", "mount_userxattr", "overlay\toverlay\t" + "\x1f".join(["userxattr", "upperdir=/u", "lowerdir=/l"]))
put("overlay_options", "mount_bind", "bind\t/var/lib/containerd/s/1/fs\trbind\x1frw")
put("overlay_options", "mount_btrfs", "btrfs\t/dev/loop0\tsubvolid=259\x1frw")

# btrfs: count byte, then search headers (32 bytes: transid, objectid, offset, type, len) + data
def header(objectid, item_type, offset, length, transid=7):
    return struct.pack("<QQQII", transid, objectid, offset, item_type, length)
def inode_item(mode, size=0):
    b = bytearray(160)
    struct.pack_into("<QQQQ", b, 0, 5, 9, size, 4096)
    struct.pack_into("<IIII", b, 40, 1, 0, 0, mode)
    return bytes(b)
ref = b"".join(struct.pack("<QH", 9, len(n)) + n for n in (b"a", b"bb"))
extref = struct.pack("<QQH", 777, 1, 3) + b"xyz"
items = [(300, 1, 0, inode_item(0o100644, 3)), (300, 12, 256, ref), (301, 13, 12345, extref), (256, 1, 0, inode_item(0o40755))]
buf = b"".join(header(o, t, off, len(d)) + d for o, t, off, d in items)
put("btrfs_items", "search", bytes([len(items)]) + buf)
put("btrfs_items", "short", bytes([3]) + buf[:60])

# docker: inspect (reduced), ping, layerdb id, security options
inspect = {
    "Id": "0123abcd" * 8, "Name": "/pg", "Driver": "overlay2",
    "State": {"Status": "running", "Running": True, "Pid": 4242, "Dead": False},
    "HostnamePath": "/var/lib/docker/containers/" + "0123abcd" * 8 + "/hostname",
    "HostsPath": "/var/lib/docker/containers/" + "0123abcd" * 8 + "/hosts",
    "GraphDriver": {"Name": "overlay2", "Data": {"LowerDir": "/var/lib/docker/overlay2/ab-init/diff:/var/lib/docker/overlay2/cd/diff", "UpperDir": "/var/lib/docker/overlay2/ab/diff", "WorkDir": "/var/lib/docker/overlay2/ab/work", "MergedDir": "/var/lib/docker/overlay2/ab/merged"}},
    "Mounts": [{"Type": "volume", "Name": "v", "Source": "/var/lib/docker/volumes/v/_data", "Destination": "/var/lib/postgresql/data", "RW": True}],
    "HostConfig": {"Tmpfs": {"/run": "rw"}},
    "Config": {"Image": "postgres:16"},
}
put("docker_responses", "inspect_overlay2", json.dumps(inspect))
btrfs = dict(inspect, GraphDriver={"Name": "btrfs", "Data": None}, State={"Status": "removing", "Pid": 0})
put("docker_responses", "inspect_btrfs", json.dumps(btrfs))
put("docker_responses", "ping", "HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nDocker-Experimental: false\r\nContent-Length: 2\r\n\r\nOK")
put("docker_responses", "layerdb_mount_id", "6f1c0d2e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1\n")
put("docker_responses", "layerdb_init_id", "6f1c0d2e9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1-init")
put("docker_responses", "security_options", "name=seccomp,profile=builtin\nname=rootless\nname=cgroupns\n")

# containerd: protobuf
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
def field(num, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload
def mount(kind, source, options):
    return field(1, kind) + field(2, source) + b"".join(field(4, o) for o in options)
put("containerd_responses", "mounts_overlay", field(1, mount("overlay", "overlay", ["index=off", "workdir=/w", "upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/9/fs", "lowerdir=/s/8/fs:/s/7/fs"])))
put("containerd_responses", "mounts_btrfs", field(1, mount("btrfs", "/dev/loop0", ["subvolid=259", "rw"])))
spec = json.dumps({"ociVersion": "1.1.0", "mounts": [{"destination": "/proc", "type": "proc"}, {"destination": "/etc/hosts", "type": "bind"}, {"destination": "relative"}]})
any_spec = field(1, "types.containerd.io/opencontainers/runtime-spec/1/Spec") + field(2, spec)
labels = field(2, field(1, "io.kubernetes.container.name") + field(2, "web")) + field(2, field(1, "io.cri-containerd.kind") + field(2, "container"))
container = field(1, "0123abcd") + labels + field(3, "docker.io/library/nginx:latest") + field(5, any_spec) + field(6, "overlayfs") + field(7, "")
put("containerd_responses", "container_record", field(1, container))

# fanotify: metadata (24 bytes) + one DFID_NAME record
def fan_event(mask, handle, name):
    record = bytearray([2, 0, 0, 0]) + bytes([7] * 8) + struct.pack("=I", len(handle) - 4) + handle + name + b"\0"
    while len(record) % 4:
        record.append(0)
    struct.pack_into("=H", record, 2, len(record))
    return struct.pack("=IBBHQii", 24 + len(record), 3, 0, 24, mask, -1, 0) + bytes(record)
handle = struct.pack("=i", 1) + bytes(range(8))
put("fanotify_events", "create_delete", fan_event(0x100, handle, b"f1") + fan_event(0x40000100, handle, b"d") + fan_event(0x200, handle, b"x\nname"))
put("fanotify_events", "overflow", struct.pack("=IBBHQii", 24, 3, 0, 24, 0x4000, -1, 0))

# renderers: structured by `arbitrary` from raw bytes; any bytes are valid, these steer names.
put("diff_render", "names", b"\x01/tmp/caf\xc3\xa9\n\x01\x7f\x00\x01\x02\x03/x\xff\"\\y\x00\x01\x00\x00\x00\x05\x00\x00\x00")
put("diff_render", "plain", b"/var/lib/postgresql/data/pg_wal/000000010000000000000001" + bytes(range(32)))
put("plan_render", "names", b"\x01\x05\x02\x07\x0b\x0c\x01\x02/run/postgresql\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xed\x01default\x00why\x00")
put("plan_render", "hostile", bytes(range(256)))

# the C ABI: a sequence of calls structured by `arbitrary`; these make clients early and call
# them with strings of many lengths.
import random
rng = random.Random(14)
put("c_abi", "ramp", bytes(range(256)) * 4)
put("c_abi", "clients_then_calls", b"\x00\x01\x01\x01\x00\x00\x01" * 3 + bytes([2, 1, 3, 1, 4, 1, 5, 1, 6, 7, 8, 9]) * 8 + b"/x\n\xff" * 16)
put("c_abi", "random", rng.randbytes(4096))
