#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/ (deterministic: same bytes every run).

    python3 fuzz/seeds.py            # rewrite corpus/<target>/seed-* for every target

Seeds are small valid (and a few hostile) inputs of each format, so the fuzzer starts
from the interesting parts instead of discovering tar or JSON by itself. The structured
archive format (`==> NAME` sections with {dN}/{hN}/{sN}/{uN} digest placeholders) is
described in runtime/src/image/import/fuzzing.rs. Inputs the fuzzer found later are not
written here: they go to fuzz/regressions/<target>/ by hand, after the fix.
"""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
MTIME = 1700000000


def tar(entries, fmt=tarfile.PAX_FORMAT):
    """entries: (name, kind, extra) with kind file/dir/sym/link/char/blk/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, extra in entries:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            info.mode = 0o755 if kind == "dir" else 0o644
            data = None
            if kind == "file":
                data = extra.get("data", b"")
                info.size = len(data)
                info.mode = extra.get("mode", 0o644)
                info.pax_headers = extra.get("pax", {})
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type = tarfile.SYMTYPE
                info.linkname = extra
            elif kind == "link":
                info.type = tarfile.LNKTYPE
                info.linkname = extra
            elif kind in ("char", "blk"):
                info.type = tarfile.CHRTYPE if kind == "char" else tarfile.BLKTYPE
                info.devmajor, info.devminor = extra
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    # tarfile pads to 10 KiB records; two zero blocks end an archive.
    out = buf.getvalue()
    while out.endswith(b"\0" * 512):
        out = out[:-512]
    return out + b"\0" * 1024


def gz(data):
    return gzip.compress(data, mtime=0)


def zst(data):
    return subprocess.run(
        ["zstd", "-q", "-c", "-3"], input=data, stdout=subprocess.PIPE, check=True
    ).stdout


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    # seed-ok-*: must import (as root); seed-bad-*: must be refused (the tier-1 replay
    # checks both); references are only replayed.
    kind = "" if target == "image_reference" or name[:3] in ("bad", "ok-") else "ok-"
    with open(os.path.join(d, "seed-" + kind + name), "wb") as f:
        f.write(data)


BASIC = tar(
    [
        ("./", "dir", None),
        ("bin/", "dir", None),
        ("bin/busybox", "file", {"data": b"#!/bin/sh\necho hi\n", "mode": 0o4755}),
        ("bin/sh", "sym", "busybox"),
        ("etc/", "dir", None),
        ("etc/hello", "file", {"data": b"hello\n"}),
        ("etc/hello2", "link", "etc/hello"),
    ]
)
WHITEOUTS = tar(
    [
        ("a/", "dir", None),
        ("a/.wh..wh..opq", "file", {}),
        ("a/keep", "file", {"data": b"k"}),
        (".wh.gone", "file", {}),
        (".wh..wh.plnk", "dir", None),
        ("b/.wh.x", "file", {}),
    ]
)


def layer_seeds():
    t = "layer_unpack"
    plain = b"\x00"
    hidden = b"\x01"  # the blob's length is not known: compressed blobs use two threads
    write(t, "basic", plain + BASIC)
    write(t, "whiteouts", plain + WHITEOUTS)
    write(
        t,
        "xattrs",
        plain
        + tar(
            [
                (
                    "f",
                    "file",
                    {
                        "data": b"x",
                        "pax": {
                            "SCHILY.xattr.user.a": "1",
                            "SCHILY.xattr.trusted.overlay.opaque": "y",
                            # v2 file capabilities: cap_net_bind_service permitted.
                            "SCHILY.xattr.security.capability": "\0\0\0\x02\0\x04"
                            + "\0" * 14,
                        },
                    },
                ),
            ]
        ),
    )
    write(
        t,
        "bad-xattr-value",
        plain
        + tar(
            [("f", "file", {"pax": {"SCHILY.xattr.security.capability": "\x01\0\0\x02"}})]
        ),
    )
    write(
        t,
        "devices",
        plain
        + tar(
            [
                ("dev/", "dir", None),
                ("dev/null", "char", (1, 3)),
                ("dev/loop9", "blk", (7, 9)),
                ("dev/fifo", "fifo", None),
            ]
        ),
    )
    long = "d" * 120 + "/" + "f" * 140
    write(
        t,
        "gnu-long-names",
        plain
        + tar(
            [(long, "file", {"data": b"long"}), ("l", "sym", "t" * 150)],
            fmt=tarfile.GNU_FORMAT,
        ),
    )
    write(t, "gzip", plain + gz(BASIC))
    write(t, "gzip-threaded", hidden + gz(WHITEOUTS))
    write(t, "zstd", plain + zst(BASIC))
    write(t, "zstd-threaded", hidden + zst(BASIC))
    # Hostile: each must be refused, never written outside.
    write(t, "bad-dotdot", plain + tar([("../escape", "file", {"data": b"x"})]))
    write(t, "bad-absolute", plain + tar([("/etc/escape", "file", {"data": b"x"})]))
    write(
        t,
        "bad-through-symlink",
        plain
        + tar([("l", "sym", "../../../.."), ("l/escape", "file", {"data": b"x"})]),
    )
    write(
        t,
        "bad-hardlink-outside",
        plain + tar([("h", "link", "../../etc/passwd"), ("g", "link", "nothere")]),
    )
    write(
        t,
        "bad-duplicate",
        plain + tar([("f", "file", {"data": b"1"}), ("f", "file", {"data": b"2"})]),
    )


def sections(files, tag=None):
    out = []
    for name, content in files:
        out.append(b"==> " + name.encode() + b"\n" + content)
    if tag is not None:
        out.append(b"==> --tag\n" + tag.encode())
    return b"\n".join(out)


def j(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_TGZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
REF = "org.opencontainers.image.ref.name"


def desc(media, n, **more):
    # Placeholders are JSON strings; the size one is patched to a bare number below.
    d = {"mediaType": media, "digest": "{d%d}" % n, "size": "{s%d}" % n}
    d.update(more)
    return d


def unquote_sizes(b):
    for n in range(10):
        b = b.replace(b'"{s%d}"' % n, b"{s%d}" % n)
    return b


def config(diff_refs):
    return j(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_refs},
        }
    )


def oci_seeds():
    t = "oci_archive"

    def manifest(cfg, layers, media=OCI_MANIFEST):
        return unquote_sizes(
            j(
                {
                    "schemaVersion": 2,
                    "mediaType": media,
                    "config": desc(OCI_CONFIG, cfg),
                    "layers": [desc(m, n) for m, n in layers],
                }
            )
        )

    def index(descs):
        return unquote_sizes(
            j({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs})
        )

    blob = "blobs/sha256/{h%d}"
    write(
        t,
        "one-layer",
        sections(
            [
                (
                    "index.json",
                    index([desc(OCI_MANIFEST, 1, annotations={REF: "hull/fuzz:1"})]),
                ),
                (blob % 1, manifest(2, [(OCI_TAR, 3)])),
                (blob % 2, config(["{u3}"])),
                (blob % 3, BASIC),
            ]
        ),
    )
    write(
        t,
        "gzip-two-layers-tag",
        sections(
            [
                ("index.json", index([desc(OCI_MANIFEST, 1, annotations={REF: "1.0"})])),
                (blob % 1, manifest(2, [(OCI_TGZ, 3), (OCI_TAR, 4)])),
                (blob % 2, config(["{u3}", "{u4}"])),
                (blob % 3, gz(BASIC)),
                (blob % 4, WHITEOUTS),
            ],
            tag="fuzz/two:1.0",
        ),
    )
    plat = lambda arch: {"architecture": arch, "os": "linux"}
    write(
        t,
        "nested-index-platforms",
        sections(
            [
                (
                    "index.json",
                    index([desc(OCI_INDEX, 1, annotations={REF: "hull/multi:1"})]),
                ),
                (
                    blob % 1,
                    index(
                        [
                            desc(OCI_MANIFEST, 2, platform=plat("arm64")),
                            desc(OCI_MANIFEST, 3, platform=plat("amd64")),
                        ]
                    ),
                ),
                (blob % 2, manifest(4, [])),
                (blob % 3, manifest(4, [(OCI_TAR, 5)])),
                (blob % 4, config(["{u5}"])),
                (blob % 5, BASIC),
            ]
        ),
    )
    write(
        t,
        "docker-media-types",
        sections(
            [
                (
                    "index.json",
                    index([desc(DOCKER_MANIFEST, 1, annotations={REF: "x/y:z"})]),
                ),
                (
                    blob % 1,
                    manifest(
                        2,
                        [("application/vnd.docker.image.rootfs.diff.tar.gzip", 3)],
                        DOCKER_MANIFEST,
                    ),
                ),
                (blob % 2, config(["{u3}"])),
                (blob % 3, gz(BASIC)),
            ]
        ),
    )
    # Blobs reached through links inside the archive.
    write(
        t,
        "linked-blobs",
        sections(
            [
                (
                    "index.json",
                    index([desc(OCI_MANIFEST, 3, annotations={REF: "l/inks:1"})]),
                ),
                ("blobs/sha256/{h3} -> ../../m.json", b""),
                ("blobs/sha256/{h4} => c.json", b""),
                ("m.json", manifest(4, [])),
                ("c.json", config([])),
            ]
        ),
    )
    # The raw form (a real tar, no placeholders), digests computed here.
    cfg = config([sha(BASIC)])
    man = (
        j(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
                "layers": [{"mediaType": OCI_TAR, "digest": sha(BASIC), "size": len(BASIC)}],
            }
        )
    )
    idx = j(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": sha(man),
                    "size": len(man),
                    "annotations": {REF: "raw/oci:1"},
                }
            ],
        }
    )
    write(
        t,
        "raw-tar",
        raw_tar(
            [
                ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                ("index.json", idx),
                ("blobs/sha256/" + hexd(man), man),
                ("blobs/sha256/" + hexd(cfg), cfg),
                ("blobs/sha256/" + hexd(BASIC), BASIC),
            ]
        ),
    )


def sha(b):
    return "sha256:" + hexd(b)


def hexd(b):
    return hashlib.sha256(b).hexdigest()


def raw_tar(files):
    return tar([(n, "file", {"data": d}) for n, d in files], fmt=tarfile.USTAR_FORMAT)


def docker_seeds():
    t = "docker_archive"
    write(
        t,
        "legacy",
        sections(
            [
                (
                    "manifest.json",
                    j([{"Config": "{h1}.json", "RepoTags": ["hull/fuzz:1"], "Layers": ["{h2}/layer.tar"]}]),
                ),
                ("{h1}.json", config(["{u2}"])),
                ("{h2}/layer.tar", BASIC),
            ]
        ),
    )
    write(
        t,
        "blobs-two-layers",
        sections(
            [
                (
                    "manifest.json",
                    j(
                        [
                            {
                                "Config": "blobs/sha256/{h1}",
                                "RepoTags": ["docker.io/library/busybox:latest"],
                                "Layers": ["blobs/sha256/{h2}", "blobs/sha256/{h3}"],
                            }
                        ]
                    ),
                ),
                ("blobs/sha256/{h1}", config(["{u2}", "{u3}"])),
                ("blobs/sha256/{h2}", BASIC),
                ("blobs/sha256/{h3}", gz(WHITEOUTS)),
            ]
        ),
    )
    write(
        t,
        "two-images-tag-symlinked-layer",
        sections(
            [
                (
                    "manifest.json",
                    j(
                        [
                            {"Config": "{h1}.json", "RepoTags": ["a/one:1"], "Layers": ["x/layer.tar"]},
                            {"Config": "{h1}.json", "RepoTags": None, "Layers": ["y/layer.tar"]},
                        ]
                    ),
                ),
                ("{h1}.json", config(["{u2}"])),
                ("x/layer.tar", BASIC),
                ("y/layer.tar -> ../x/layer.tar", b""),
            ],
            tag="a/one:1",
        ),
    )
    write(
        t,
        "bad-untagged-needs-tag",
        sections(
            [
                ("manifest.json", j([{"Config": "c.json", "Layers": []}])),
                ("c.json", config([])),
            ]
        ),
    )
    cfg = config([sha(BASIC)])
    man = j([{"Config": hexd(cfg) + ".json", "RepoTags": ["raw/docker:1"], "Layers": ["l/layer.tar"]}])
    write(
        t,
        "raw-tar",
        raw_tar(
            [("manifest.json", man), (hexd(cfg) + ".json", cfg), ("l/layer.tar", BASIC)]
        ),
    )


OP_REQUEST, OP_RESPONSE, OP_RST, OP_SHUTDOWN, OP_RW, OP_CREDIT_UPDATE, OP_CREDIT_REQUEST = range(1, 8)


def frame(kind, payload):
    kinds = {"control": 1, "stdin": 2, "stdout": 3, "stderr": 4}
    return bytes([1, kinds[kind], 0, 0]) + len(payload).to_bytes(4, "big") + payload


def msg(obj):
    return frame("control", j(obj))


# An OCI process (config.json's "process") and how its stdio reaches the host.
PROCESS = {
    "terminal": True,
    "user": {"uid": 1000, "gid": 1000},
    "args": ["/bin/sh", "-c", "echo hi"],
    "env": ["PATH=/bin:/usr/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {"bounding": ["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]},
    "noNewPrivileges": True,
}
STDIO = {"tty": True, "stdin": True, "tty_size": [24, 80]}


def protocol_seeds():
    # The first byte shapes the reads (see protocol/src/fuzzing.rs): 0 = whole reads,
    # 0x41 = one byte per read with EINTR in between.
    t = "protocol_guest_to_host"
    hello = msg({"type": "hello", "protocol": 1, "kernel": "6.12.30-hull"})
    out = frame("stdout", b"hello\n") + frame("stderr", b"oops\n")
    exit0 = msg({"type": "exit", "code": 0})
    write(t, "ok-boot-output-exit", b"\0" + hello + out + exit0)
    write(t, "ok-trickled", b"\x41" + hello + frame("stdout", b"x" * 40) + exit0)
    write(t, "ok-started-then-closed", b"\x05" + hello + msg({"type": "started", "pid": 42}))
    write(
        t,
        "ok-error",
        b"\0" + hello + msg({"type": "error", "code": 3, "stage": 26, "errno": 2, "detail": "nope"}),
    )
    write(t, "bad-exit-out-of-range", b"\0" + hello + msg({"type": "exit", "code": 999}))
    write(t, "bad-oversized", b"\0" + hello + bytes([1, 3, 0, 0]) + (64 << 20).to_bytes(4, "big"))
    write(t, "bad-kernel-escape", b"\0" + msg({"type": "hello", "protocol": 1, "kernel": "6.12\n\x1b[2J"}))
    write(t, "bad-truncated", b"\0" + hello + exit0[:-2])
    write(t, "bad-not-hello", b"\0" + exit0)
    t = "protocol_host_to_guest"
    start = msg(
        {
            "type": "start",
            "spec": {
                "ociVersion": "1.0.2",
                "hostname": "box",
                "root": {"path": "rootfs"},
                "process": PROCESS,
                "linux": {
                    "cgroupsPath": "/hull/box",
                    "resources": {"memory": {"limit": 64 << 20}, "pids": {"limit": 100}},
                },
            },
            "stdio": STDIO,
        }
    )
    write(
        t,
        "ok-start-stdin-resize-signal",
        b"\0"
        + start
        + frame("stdin", b"ls\n")
        + msg({"type": "resize", "rows": 50, "cols": 132})
        + msg({"type": "signal", "signal": 15})
        + frame("stdin", b""),
    )
    exec_ = {"type": "exec", "process": PROCESS, "stdio": STDIO}
    write(t, "ok-exec", b"\x41" + msg(exec_) + frame("stdin", b"y" * 30))
    write(t, "ok-signal", b"\x02" + msg({"type": "signal", "signal": 9}))
    write(t, "bad-exec-relative-cwd", b"\0" + msg(dict(exec_, process=dict(PROCESS, cwd="tmp"))))
    write(t, "bad-unknown-field", b"\0" + msg({"type": "signal", "signal": 9, "path": "/etc/shadow"}))
    write(t, "bad-signal-zero", b"\0" + msg({"type": "signal", "signal": 0}))
    write(t, "bad-version", b"\0" + bytes([2]) + start[1:])
    write(t, "bad-reserved", b"\0" + start[:3] + b"\x01" + start[4:])


# The virtio targets read their input as a stream of choices (vmm/src/fuzzing/guest.rs
# `Input`): these helpers write the same choices.
def u8(v):
    return bytes([v & 0xFF])


def u16(v):
    return (v & 0xFFFF).to_bytes(2, "little")


def u32(v):
    return (v & 0xFFFFFFFF).to_bytes(4, "little")


def u64(v):
    return (v & (2**64 - 1)).to_bytes(8, "little")


def buf_addr(slot):
    """A buffer at BUFFERS_AT + slot * 4."""
    return u8(7) + u16(slot)


def length(n):
    if n == 0:
        return u8(0)
    if n == 1:
        return u8(1)
    if n == 16:
        return u8(2)
    if n < 65536:
        return u8(5) + u16(n)
    return u8(4) + u32(n)


NEXT, WRITE = 1, 2


def chain_desc(addr, n, flags, nxt):
    return addr + length(n) + u8(flags) + u8(nxt)


def chain_seed(exp, descs, indirect=(), heads=(0,), checks=b""):
    out = u8(exp)
    size = 1 << exp
    descs = list(descs) + [chain_desc(buf_addr(0), 0, 0, 0)] * (size - len(descs))
    out += b"".join(descs)
    out += u8(len(indirect)) + b"".join(indirect)
    out += u8(len(heads)) + b"".join(u8(h) for h in heads)
    return out + checks


def virtio_seeds():
    t = "virtio_chain"
    check = u8(1) + u32(0) + u32(1)
    write(
        t,
        "ok-header-status",
        chain_seed(2, [chain_desc(buf_addr(0x40), 16, NEXT, 1), chain_desc(buf_addr(0x80), 1, WRITE, 0)], checks=check),
    )
    indirect_head = buf_addr(0) + length(0) + u8(0x80 | 0x40) + u8(2) + u8(0)
    # No device offers VIRTIO_RING_F_INDIRECT_DESC: a chain through an indirect table is refused.
    write(
        t,
        "bad-indirect",
        chain_seed(
            1,
            [indirect_head],
            indirect=[chain_desc(buf_addr(0x40), 16, NEXT, 1), chain_desc(buf_addr(0x80), 512, WRITE, 0)],
            checks=check,
        ),
    )
    write(
        t,
        "ok-across-regions",
        chain_seed(0, [u8(0) + u8(0x80) + length(512) + u8(0) + u8(0)], checks=u8(0) + u32(100) + u32(300)),
    )
    write(
        t,
        "bad-loop",
        chain_seed(2, [chain_desc(buf_addr(0x40), 16, NEXT, 1), chain_desc(buf_addr(0x80), 1, NEXT | WRITE, 0)]),
    )
    write(t, "bad-into-the-hole", chain_seed(0, [u8(1) + u8(0x10) + length(4096) + u8(0) + u8(0)]))
    write(
        t,
        "bad-readable-after-writable",
        chain_seed(2, [chain_desc(buf_addr(0x40), 1, NEXT | WRITE, 1), chain_desc(buf_addr(0x80), 16, 0, 0)]),
    )

    t = "virtio_block"

    def header(kind, sector):
        return u8(0) + u8(kind) + u8(sector)

    def data(writable, sectors, fill=0x5A):
        return u8(2 if writable else 1) + u8(sectors) + (b"" if writable else u8(fill))

    status = u8(3)

    def block(ro, sectors, chains):
        out = u8(1 if ro else 0) + u8(sectors - 1) + u8(len(chains) - 1)
        for parts in chains:
            out += u8(len(parts) - 1) + b"".join(parts)
        return out

    write(t, "ok-read", block(True, 16, [[header(0, 2), data(True, 2), status]]))
    write(
        t,
        "ok-write-flush",
        block(False, 16, [[header(1, 3), data(False, 1), status], [header(2, 0), status]]),
    )
    write(t, "ok-get-id", block(True, 4, [[header(3, 0), data(True, 1), status]]))
    write(t, "ok-read-only-write-refused", block(True, 4, [[header(1, 0), data(False, 1), status]]))
    write(t, "ok-out-of-range", block(False, 4, [[header(0, 5), data(True, 1), status]]))
    write(t, "bad-no-status", block(False, 4, [[header(1, 0), data(False, 1)]]))
    write(t, "bad-readable-after-writable", block(False, 4, [[header(0, 0), data(True, 1), data(False, 1), status]]))

    t = "vsock_muxer"

    def vhdr(src_port, dst_port, op, src_cid=3, dst_cid=2, n=0, flags=0, buf_alloc=0, fwd_cnt=0):
        return (
            u64(src_cid) + u64(dst_cid) + u32(src_port) + u32(dst_port) + u32(n) + u16(1)
            + u16(op) + u32(flags) + u32(buf_alloc) + u32(fwd_cnt)
        )

    def send(hdr, payload=b"", fixed=True, host_port=None, first=False):
        shape = (0x80 if fixed else 0) | (0x40 | (1 if host_port == 1024 else 0) if host_port else 0)
        out = u8(0) + u8(shape) + hdr + u8(len(payload)) + payload
        if first:
            out += u16(8192)  # the guest's buffer, chosen at its first packet on a key
        return out + u8(0)

    def receive(count=4, size=1000):
        return u8(5) + u8(count - 1) + u8(2) + u16(size - 64)

    op = lambda o: o - 1  # the fixed-up op field: 1 + field % 7
    write(
        t,
        "ok-guest-connects-and-talks",
        receive()
        + send(vhdr(5000, 0, op(OP_REQUEST)), host_port=52, first=True)
        + u8(3) + u16(5) + u8(0) + b"hello"
        + receive()
        + send(vhdr(5000, 0, op(OP_RW)), b"hi there", host_port=52)
        + u8(7) + u16(5)
        + send(vhdr(5000, 0, op(OP_CREDIT_REQUEST)), host_port=52)
        + send(vhdr(5000, 0, op(OP_SHUTDOWN), flags=3), host_port=52)
        + receive(),
    )
    write(
        t,
        "ok-host-connects",
        u8(2) + u8(2) + u8(0)  # CONNECT 1024
        + u8(6)
        + receive()
        + send(vhdr(1024, 1024, op(OP_RESPONSE)), first=True)
        + u8(3) + u16(4) + u8(0) + b"ping"
        + receive()
        + u8(4) + u8(0) + u8(0)
        + receive(),
    )
    write(t, "ok-refused-port", receive() + send(vhdr(6000, 0, op(OP_REQUEST)), first=True) + receive())
    write(t, "ok-connect-crlf", u8(2) + u8(1) + u32(7) + u8(6) + receive())
    write(
        t,
        "bad-wrong-cid",
        receive() + send(vhdr(5000, 52, OP_REQUEST, src_cid=7), fixed=False) + receive(),
    )


def reference_seeds():
    t = "image_reference"
    for i, r in enumerate(
        [
            "busybox",
            "hull/busybox:1.35",
            "docker.io/library/alpine:3.19",
            "localhost:5000/team/app:v1",
            "localhost/app",
            "a/b/c:t",
            "registry.example.com:443/x/y_z__w-1.2:Tag_1.0-rc",
            "alpine@sha256:" + "0" * 64,
            "alpine:3.19@sha256:" + "a" * 64,
            "[::1]:5000/x/y",
            "Upper/x",
            "x/..",
            "index.docker.io/library/alpine",
            "ghcr.io/owner/repo:v1@sha256:" + "b" * 64,
            "a__b/c-d---e:T.1",
            "localhost:5000/app",
        ]
    ):
        write(t, "%02d" % i, r.encode())


if __name__ == "__main__":
    layer_seeds()
    oci_seeds()
    docker_seeds()
    reference_seeds()
    protocol_seeds()
    virtio_seeds()
    sys.exit(0)
