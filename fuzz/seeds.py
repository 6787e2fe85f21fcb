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
    kind = "" if target == "image_reference" or name.startswith("bad-") else "ok-"
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
        ]
    ):
        write(t, "%02d" % i, r.encode())


if __name__ == "__main__":
    layer_seeds()
    oci_seeds()
    docker_seeds()
    reference_seeds()
    sys.exit(0)
