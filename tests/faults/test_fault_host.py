"""The host says no: a disk that fills up, a read-only target or store.

Each case runs dgr inside a private mount namespace (`unshare --mount`) where a small tmpfs
holds the target (or the store): full after a few megabytes, or remounted read-only. The
mounts vanish with the namespace, whatever happens. The steps run in there and report back
as JSON (exit codes, outputs, what the folder holds, the digest of image.aci).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import Env, error_lines
from tests.support.discovery import DiscoveryServer, aci, discovery_server, entry

pytestmark = pytest.mark.integration

# Runs in the namespace: mount, then each step; prints one JSON list of results.
DRIVER = r"""
import hashlib, json, os, subprocess, sys
steps = json.loads(sys.argv[1])
results = []
for step in steps:
    kind, arg = step
    if kind == "sh":
        subprocess.run(arg, shell=True, check=True)
    elif kind == "dgr":
        proc = subprocess.run([sys.executable, "-m", "dgr.cli", *arg], capture_output=True, text=True)
        results.append({"code": proc.returncode, "out": proc.stdout, "err": proc.stderr})
    elif kind == "look":
        path = arg
        found = {"names": sorted(os.listdir(path)) if os.path.isdir(path) else None}
        aci = os.path.join(path, "image.aci")
        if os.path.isfile(aci):
            found["aci"] = hashlib.sha256(open(aci, "rb").read()).hexdigest()
        results.append(found)
print(json.dumps(results))
"""


def in_namespace(env: Env, mount: str, steps: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Mount `mount` (a tmpfs) in a private mount namespace, run `steps` there."""
    sh = f'mount -t tmpfs -o {mount} dgr-faults {env.root / "small"} && exec "$@"'
    (env.root / "small").mkdir(exist_ok=True)
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            sh,
            "sh",
            sys.executable,
            "-c",
            DRIVER,
            json.dumps(steps),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": str(env.tmp), "PYTHONPATH": str(Path.cwd())},
    )
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


def dgr_args(env: Env, *args: str, targets: bool = True) -> tuple[str, list[str]]:
    base = ["-H", str(env.home), "-W", str(env.project)]
    if targets:
        base += ["-p", str(env.root / "small")]
    return ("dgr", [*base, *args])


def one_error(result: dict[str, Any], pattern: str) -> None:
    text = result["out"] + result["err"]
    assert "Traceback" not in text, text
    assert result["code"] == 1, text
    lines = error_lines(result["err"])
    assert len(lines) == 1, result["err"]
    assert re.search(pattern, lines[0]), lines[0]


def target_of(env: Env) -> str:
    return str(env.root / "small" / "aci-fault")


def test_disk_full_while_packaging(fault_env: Env) -> None:
    env = fault_env
    big = env.project / "files" / "big"
    build, look = dgr_args(env, "build"), ("look", target_of(env))
    first, before, failed, after, fixed, last = in_namespace(
        env,
        "size=40m",
        [
            build,
            look,
            ("sh", f"mkdir -p {big.parent} && head -c 9000000 /dev/urandom > {big}"),
            build,
            look,
            ("sh", f"rm {big}"),
            build,
            look,
        ],
    )
    assert first["code"] == 0, first["err"]
    one_error(failed, r"small/aci-fault: build: no space left on device — free some space")
    assert after["aci"] == before["aci"], "the previous image.aci was lost"
    assert not [n for n in after["names"] if n.endswith(".tmp") or n == "work"], after["names"]
    assert fixed["code"] == 0, fixed["err"]
    assert [n for n in last["names"] if n.startswith(".")] == [".lock"]


def test_disk_full_in_a_build_step(fault_env: Env) -> None:
    env = fault_env
    big = env.project / "files" / "big"
    build, look = dgr_args(env, "build"), ("look", target_of(env))
    first, before, failed, after, fixed = in_namespace(
        env,
        "size=40m",
        [
            build,
            look,
            ("sh", f"mkdir -p {big.parent} && head -c 30000000 /dev/urandom > {big}"),
            build,
            look,
            ("sh", f"rm {big}"),
            build,
        ],
    )
    assert first["code"] == 0, first["err"]
    # Which write meets the full disk first is a race: the step's copy, or dgr writing the
    # step's output to the build log (on the same filesystem); either is one clear line.
    one_error(
        failed,
        r"copying files failed: exit code 1 — the disk is full \(No space left on device\)"
        r"|writing the output of \S+: no space left on device — free some space",
    )
    assert after["aci"] == before["aci"]
    assert "work" not in after["names"]
    assert fixed["code"] == 0, fixed["err"]


@pytest.mark.parametrize(
    ("command", "pattern"),
    [
        (
            ["build"],
            r"small/aci-fault/.lock: build: read-only file system — remount it read-write",
        ),
        (["try"], r"small/aci-fault/try: dgr try: read-only file system"),
        (["clean"], r"small/aci-fault: dgr clean: read-only file system"),
    ],
)
def test_read_only_target(fault_env: Env, command: list[str], pattern: str) -> None:
    env = fault_env
    (env.project / "templates").mkdir()
    (env.project / "templates" / "x.tmpl").write_text("x\n")
    small = env.root / "small"
    first, before, failed, after = in_namespace(
        env,
        "size=40m",
        [
            dgr_args(env, "build"),
            ("look", target_of(env)),
            ("sh", f"mount -o remount,ro {small}"),
            dgr_args(env, *command),
            ("look", target_of(env)),
        ],
    )
    assert first["code"] == 0, first["err"]
    one_error(failed, pattern)
    assert after == before


def test_read_only_target_in_dgr_test(fault_env: Env) -> None:
    """The pytest `build` item reports it as one message, not an OSError's traceback."""
    env = fault_env
    (env.project / "tests").mkdir()
    (env.project / "tests" / "t.bats").write_text('@test "t" {\n  true\n}\n')
    small = env.root / "small"
    (result,) = in_namespace(env, "size=1m", [("sh", f"mount -o remount,ro {small}"), dgr_args(env, "test")])
    text = result["out"] + result["err"]
    assert result["code"] == 1, text
    assert "build: read-only file system" in text
    assert "Traceback" not in text and "OSError" not in text


@pytest.fixture
def server() -> Iterator[DiscoveryServer]:
    with discovery_server() as found:
        yield found


@pytest.mark.parametrize(
    ("mount", "size", "pattern"),
    [
        (
            "size=40m,ro",
            1 << 10,
            r"small/images: example.test/dep:1 from \S+: adding an image to the store: read-only",
        ),
        (
            "size=4m",
            8 << 20,
            r"small/images: example.test/dep:1 from \S+: adding an image to the store: no space left",
        ),
    ],
    ids=["read-only", "full"],
)
def test_store_refuses(fault_env: Env, server: DiscoveryServer, mount: str, size: int, pattern: str) -> None:
    env = fault_env
    import os

    server.publish(
        "example.test/dep", "1", aci("example.test/dep", "1", [entry("rootfs/data", os.urandom(size))])
    )
    env.extra["base_config"] = f"cachePath: {env.extra['cache']}\nstorePath: {env.root / 'small'}\n"
    env.config(server.config())
    (env.project / "aci-manifest.yml").write_text(
        "name: example.com/aci-fault:1\naci:\n  dependencies: [example.test/dep:1]\n"
    )
    failed, store = in_namespace(
        env, mount, [dgr_args(env, "build", targets=False), ("look", str(env.root / "small" / "images"))]
    )
    one_error(failed, pattern)
    assert not [n for n in store["names"] or [] if n.startswith(".add-")]
