"""Count manifest loads and build() calls in a pytest session (docs/architecture.md).

    .venv/bin/python -P bench/plan_counts.py image   # base + app: two image folders
    .venv/bin/python -P bench/plan_counts.py pod     # a pod of two apps on those images

Writes a repository in a temporary folder, runs one pytest session on it in this process
(no xdist) with the dgr plugin, and prints how often each manifest file was read and how
often `dgr.build.build` went past its checks (one `_build_locked` call per build() call).
Run with PYTHONPATH=<an export of another commit> to measure that commit.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import dgr.build
import dgr.manifest_load
import dgr.podmanifest

LOADS: Counter[str] = Counter()
BUILDS: Counter[str] = Counter()


def _counted(module: Any, name: str, counter: Counter[str], key: Any) -> None:
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        counter[key(*args, **kwargs)] += 1
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


# Patched before the modules that import these names are imported.
_counted(dgr.manifest_load, "read_manifest_text", LOADS, lambda project: Path(project).resolve().name)
_counted(dgr.podmanifest, "load_pod_manifest", LOADS, lambda project: Path(project).resolve().name)
_counted(dgr.build, "_build_locked", BUILDS, lambda manifest, *_: str(manifest.name.name))

import pytest  # noqa: E402 - after the patches

SH = "#!/dgr/bin/busybox sh\n"
BATS = '#!/usr/bin/env bats\n\n@test "up" {\n  [ -x /dgr/bin/busybox ]\n}\n'
FILES = {
    "base/aci-manifest.yml": "name: example.com/base:1\n",
    "base/files/etc/base": "base\n",
    "base/tests/base.bats": BATS,
    "app/aci-manifest.yml": "name: example.com/app:1\naci: {dependencies: [example.com/base:1]}\n",
    "app/files/etc/app": "app\n",
    "app/tests/app.bats": BATS,
    "pod-two/pod-manifest.yml": (
        "name: example.com/pod-two:1\npod:\n  apps:\n"
        "    - name: front\n      dependencies: [example.com/app:1]\n"
        "      app: {exec: [/dgr/bin/busybox, sleep, '600']}\n"
        "    - name: side\n      dependencies: [example.com/base:1]\n"
        "      app: {exec: [/dgr/bin/busybox, sleep, '600']}\n"
    ),
    "pod-two/tests/pod.bats": BATS,
}


def main(what: str) -> int:
    with tempfile.TemporaryDirectory(prefix="dgr-plan-counts-") as tmp:
        root = Path(tmp)
        for rel, text in FILES.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        home = root / ".home"
        home.mkdir()
        (home / "config.yml").write_text(f"cachePath: {root / '.cache'}\nstorePath: {root / '.store'}\n")
        folders = ["base", "app"] if what == "image" else ["pod-two"]
        args = [str(root / f) for f in folders]
        code = pytest.main([*args, "-q", "-p", "no:cacheprovider", "-p", "no:xdist", f"--dgr-home={home}"])
    print(f"{what}: exit {int(code)}")
    print(f"manifest loads: {sum(LOADS.values())} {dict(sorted(LOADS.items()))}")
    print(f"build() calls: {sum(BUILDS.values())} {dict(sorted(BUILDS.items()))}")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "image"))
