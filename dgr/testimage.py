"""What a test container runs (SPEC §7): the image's layers with `tester.aci.dependencies`
below and, when the project's `tests/` holds runlevels, attributes, files or templates, the
build of that folder above (the original's test image, `<name>-tests`, planned and built as a
node of the project's plan); then a cached *bats layer* (`/dgr/tester`: static bash,
bats-core, a `bats` wrapper) and a per-run layer holding the test files in `/dgr/tests` plus
`/bin/sh`, `/bin/bash` and `/usr/bin/env` when the image has none of them (bats files and
wait.sh are usually written for those)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from dgr import userns
from dgr.cache import cached_folder
from dgr.errors import ToolError
from dgr.images import BuildResult, Dependency, flatten
from dgr.internals_binaries import BUSYBOX
from dgr.log import log
from dgr.manifest import Aci, Manifest
from dgr.names import ImageName
from dgr.process import require_tool

TESTER_ROOT = "/dgr/tester"


TESTER_BIN = f"{TESTER_ROOT}/bin"


TESTS_IN_IMAGE = "/dgr/tests"


STATUS_IN_IMAGE = f"{TESTER_ROOT}/status"


WAIT_SCRIPT = "wait.sh"


TESTS_TARGET = "tests-target"


# A tests/ folder holding one of these is a project of its own (the original's test image).
TEST_IMAGE_PARTS = ("runlevels", "attributes", "files", "templates")


BATS_LAYER_FORMAT = "1"


def app_test_environment(manifest: Manifest) -> dict[str, str]:
    """The app's environment overridden by `tester.aci.app.environment` (tester wins)."""
    env = {e.name: e.value for e in manifest.aci.app.environment}
    env.update({e.name: e.value for e in manifest.tester.environment})
    return env


def _bats_sources() -> tuple[Path, Path, Path]:
    """bats' launcher, bats-core's root (libexec/bats-core, lib/bats-core), a static bash."""
    bats = Path(os.path.realpath(require_tool("bats", "bats")))
    root = bats.parent.parent
    if not (root / "libexec" / "bats-core" / "bats").is_file() or not (root / "lib" / "bats-core").is_dir():
        raise ToolError(f"bats-core not found next to {bats}", hint="apt-get install bats")
    bash = Path(os.path.realpath(require_tool("bash-static", "bash-static")))
    return bats, root, bash


def _sources_key(wrapper: Path, root: Path, bash: Path) -> str:
    h = hashlib.sha256(BATS_LAYER_FORMAT.encode())
    files = [
        wrapper,
        bash,
        *sorted((root / "libexec" / "bats-core").iterdir()),
        *sorted((root / "lib" / "bats-core").iterdir()),
    ]
    for path in files:
        st = path.stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:16]


def _copy_script(src: Path, dest: Path, bash: str) -> None:
    """Copy a bats script, pointing its `#!/usr/bin/env bash` line at our bash."""
    data = src.read_bytes()
    first, sep, rest = data.partition(b"\n")
    if first.startswith(b"#!") and first.split()[-1:] == [b"bash"]:
        data = b"#!" + bash.encode() + sep + rest
    dest.write_bytes(data)
    os.chmod(dest, 0o755 if os.access(src, os.X_OK) else 0o644)


def bats_layer(cache: Path) -> Path:
    """The cached layer holding `/dgr/tester` (static bash, bats-core); built once per host."""
    wrapper, root, bash = _bats_sources()

    def produce(layer: Path) -> None:
        layer.chmod(0o755)
        tester = layer / TESTER_ROOT.lstrip("/")
        bin_dir = tester / "bin"
        bin_dir.mkdir(parents=True)
        (tester / "status").mkdir()
        shutil.copyfile(bash, bin_dir / "bash")
        os.chmod(bin_dir / "bash", 0o755)
        for part in ("libexec", "lib"):
            dest = tester / part / "bats-core"
            dest.mkdir(parents=True)
            for src in sorted((root / part / "bats-core").iterdir()):
                if src.is_file():
                    _copy_script(src, dest / src.name, f"{TESTER_BIN}/bash")
        # bats' own launcher finds BATS_ROOT from its path and defines what libexec/bats needs.
        _copy_script(wrapper, bin_dir / "bats", f"{TESTER_BIN}/bash")
        os.chmod(bin_dir / "bats", 0o755)
        ids.give_tree(layer)

    ids = userns.current()
    layer = cached_folder(
        cache / "tester" / f"bats-{_sources_key(wrapper, root, bash)}-{ids.tag()}", produce
    )
    log.debug("bats layer ready in %s", layer)
    return layer


def _addable(layers: Sequence[Path], rel: str) -> bool:
    """Whether adding `rel` in a layer above `layers` hides nothing of the image.

    False when some layer has it already, or has one of its parent folders as a symlink
    (a real folder above a symlinked one would shadow the link, e.g. merged-/usr images).
    """
    parts = Path(rel).parts
    for layer in layers:
        for depth in range(1, len(parts) + 1):
            path = layer.joinpath(*parts[:depth])
            if depth == len(parts):
                if os.path.lexists(path):
                    return False
            elif path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
                return False
    return True


FALLBACKS = {"bin/sh": BUSYBOX, "bin/bash": f"{TESTER_BIN}/bash", "usr/bin/env": BUSYBOX}


def make_status_dir(run_dir: Path) -> Path:
    """The host folder where a test container writes its status (owned by its root)."""
    status = run_dir / "status"
    status.mkdir()
    userns.current().give(status)
    return status


def files_layer(tests_dir: Path, dest: Path, image_layers: Sequence[Path]) -> Path:
    """A layer with the files of `tests_dir` (depth 1) in /dgr/tests, plus shell fallbacks."""
    tests = dest / TESTS_IN_IMAGE.lstrip("/")
    tests.mkdir(parents=True)
    if tests_dir.is_dir():
        for src in sorted(tests_dir.iterdir()):
            if src.is_file() and not src.name.endswith((".py", ".pyc")):
                shutil.copyfile(src, tests / src.name)
                executable = src.name == WAIT_SCRIPT or os.access(src, os.X_OK)
                os.chmod(tests / src.name, 0o755 if executable else 0o644)
    for rel, target in FALLBACKS.items():
        if _addable(image_layers, rel):
            path = dest / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, path)
    userns.current().give_tree(dest)
    return dest


def needs_test_build(project: Path) -> bool:
    """Whether `project/tests` customises the test image (runlevels, attributes, ...)."""
    tests = project / "tests"
    return any((tests / part).is_dir() for part in TEST_IMAGE_PARTS)


def generated_test_manifest(result: BuildResult) -> Manifest:
    """The generated manifest of the test image (as the original's, name `<name>-tests`)."""
    m = result.manifest
    app = replace(m.aci.app, environment=(), isolators=m.tester.isolators or m.aci.app.isolators)
    return Manifest(
        name=ImageName(f"{result.name.name}-tests", result.name.version),
        path=m.project / "tests" / "aci-manifest.yml",
        builder=m.tester.builder,
        aci=Aci(
            # The tester's dependencies go below, in the container only: resolving them
            # from tests/ would miss the image's sibling projects outside a git tree.
            dependencies=(result.name,),
            annotations=m.aci.annotations,
            path_whitelist=m.aci.path_whitelist,
            app=app,
        ),
    )


@dataclass(frozen=True)
class TestImage:
    """What the test containers of an image run: its layers, with the tester's dependencies
    below and the build of its tests/ folder (the generated test image) above."""

    __test__ = False  # not a pytest test class

    image: BuildResult
    layers: tuple[Path, ...]
    tests: BuildResult | None = None  # the build of tests/, when they customise a test image

    @classmethod
    def of(
        cls, image: BuildResult, tester_deps: tuple[Dependency, ...] = (), tests: BuildResult | None = None
    ) -> TestImage:
        own = image.layers
        below = tuple(dict.fromkeys(d.layer for d in flatten(tester_deps) if d.layer not in own))
        top = (tests.workspace.layer,) if tests is not None else ()
        return cls(image, (*below, *own, *top), tests)
