"""Incremental builds: a digest of every input of a build, compared with the last one's.

What the digest covers is documented in docs/build.md ("Incremental builds"), the set-env
rule in docs/cli.md ("Build environment").
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import dgr
from dgr.images import flatten
from dgr.log import log
from dgr.manifest import Manifest
from dgr.staging import attribute_sources
from dgr.workspace import Workspace

if TYPE_CHECKING:
    from dgr.images import Dependency
    from dgr.options import BuildOptions

# Not inputs of the image: VCS data, the test folder (it builds the test image, whose own key
# covers it) and caches that tools write into the project.
KEY_SKIPPED = (".git", "tests")
KEY_SKIPPED_ANYWHERE = ("__pycache__", ".pytest_cache")


@dataclass(frozen=True)
class BuildKey:
    """The inputs of a build: one digest of everything but the set-env values, and one
    digest per set-env value that the build could read (`NAME` -> digest of its value)."""

    inputs: str
    env: Mapping[str, str]

    def text(self) -> str:
        return json.dumps({"inputs": self.inputs, "env": dict(sorted(self.env.items()))}, indent=1) + "\n"

    @classmethod
    def parse(cls, text: str) -> BuildKey | None:
        try:
            data = json.loads(text)
            return cls(str(data["inputs"]), {str(k): str(v) for k, v in data["env"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # an older format: the build is redone once

    def reuses(self, previous: BuildKey) -> bool:
        """Whether a build with this key may reuse the build that had key `previous`: the same
        inputs, and each set-env value it reads given as before. A value not given now does
        not count: the previous build, made with it, is reused (docs/cli.md)."""
        return self.inputs == previous.inputs and all(
            previous.env.get(name) == digest for name, digest in self.env.items()
        )


def build_key(
    manifest: Manifest,
    options: BuildOptions,
    internals: Path,
    deps: tuple[Dependency, ...],
    builder_deps: tuple[Dependency, ...],
    target: Path,
    extra_attributes: tuple[tuple[str, Path], ...] = (),
) -> BuildKey:
    """The key of a build (documented in docs/build.md).

    Covers: dgr's version and internals, the content, mode and path of every project file
    (except the target folder, .git, tests/, mount sources and __pycache__/.pytest_cache), the
    resolved dependency and builder dependency IDs, and the set-env values whose names occur
    in those files or in the dependencies' inherit-build runlevels. The log level is not an
    input: it changes no output.
    """
    h = hashlib.sha256()
    names = _NameScan(options.set_env)

    def add(*parts: str) -> None:
        for part in parts:
            h.update(part.encode("utf-8", "surrogateescape"))
            h.update(b"\0")

    add("dgr", dgr.__version__, "internals", internals.name, "manifest", repr(manifest))
    names.scan_text(repr(manifest))
    for dep in deps:  # an OCI image also by the digest of its manifest (its config may change)
        add("dep", str(dep.name), dep.image_id, dep.oci.digest if dep.oci else "")
    for dep in builder_deps:
        add("builder-dep", str(dep.name), dep.image_id, dep.oci.digest if dep.oci else "")
    for name, folder in extra_attributes:
        for path in attribute_sources(folder):
            add("attributes", name, path.name, path.read_text(encoding="utf-8", errors="surrogateescape"))
    project = manifest.project
    skip = {target.resolve(), *((project / name).resolve() for name in KEY_SKIPPED)}
    # Mount sources are caches that builds write to, not inputs.
    mounts = (*manifest.builder.mount_points, *manifest.build_mount_points)
    skip.update((project / m.source).resolve() for m in mounts if not m.source.startswith("~/"))
    for dirpath, dirnames, filenames in os.walk(project):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in KEY_SKIPPED_ANYWHERE and (Path(dirpath) / d).resolve() not in skip
        )
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(project)
            mode = path.lstat().st_mode
            if rel.parts[0] == "runlevels":
                mode &= ~0o111  # scripts are made executable when they run
            add("file", str(rel), oct(mode))
            if path.is_symlink():
                add(os.readlink(path))
            elif path.is_file():
                with open(path, "rb") as f:
                    h.update(hashlib.file_digest(f, "sha256").digest())
                    names.scan_file(f)
    if names.pending:
        names.scan_files(_inherit_scripts((*deps, *builder_deps)))
    env = {name: _env_digest(name, options.set_env[name]) for name in names.found}
    return BuildKey(h.hexdigest(), env)


def _env_digest(name: str, value: str) -> str:
    return hashlib.sha256(f"{name}={value}".encode("utf-8", "surrogateescape")).hexdigest()


def _inherit_scripts(deps: tuple[Dependency, ...]) -> Iterable[Path]:
    """The inherit-build runlevel scripts of `deps` and of everything below them: they run in
    this build too."""

    for dep in flatten(deps):
        for runlevel in ("inherit-build-early", "inherit-build-late"):
            folder = dep.layer / "dgr" / "runlevels" / runlevel
            if folder.is_dir():
                yield from sorted(p for p in folder.iterdir() if p.is_file())


# What may stand next to a variable's name in a word: `$NAME`, `${NAME}`, `"NAME"` match,
# `MY_NAME` and `NAME2` do not.
_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class _NameScan:
    """Which set-env names occur as words in the files a build reads."""

    def __init__(self, set_env: Mapping[str, str]) -> None:
        self.pending = {name: name.encode("utf-8", "surrogateescape") for name in set_env}
        self.found: set[str] = set()

    def scan(self, data: bytes | mmap.mmap) -> None:
        for name, word in list(self.pending.items()):
            if _has_word(data, word):
                self.found.add(name)
                del self.pending[name]

    def scan_text(self, text: str) -> None:
        if self.pending:
            self.scan(text.encode("utf-8", "surrogateescape"))

    def scan_file(self, f: IO[bytes]) -> None:
        if not self.pending or os.fstat(f.fileno()).st_size == 0:
            return
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                self.scan(data)
        except (OSError, ValueError):  # a file system that cannot map it
            f.seek(0)
            self.scan(f.read())

    def scan_files(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if not self.pending:
                return
            with open(path, "rb") as f:
                self.scan_file(f)


def _has_word(data: bytes | mmap.mmap, word: bytes) -> bool:
    start = data.find(word)
    while start >= 0:
        end = start + len(word)
        if (start == 0 or data[start - 1] not in _WORD) and (end >= len(data) or data[end] not in _WORD):
            return True
        start = data.find(word, start + 1)
    return False


def up_to_date(ws: Workspace, key: BuildKey) -> bool:
    """Whether the last build of `ws` may be reused for `key` and all its outputs are there."""
    outputs = (ws.aci, ws.manifest_json, ws.version_file, ws.layer, ws.oci)
    try:
        previous = BuildKey.parse(ws.key_file.read_text())
    except OSError:
        return False
    if previous is None or not key.reuses(previous) or not all(p.exists() for p in outputs):
        return False
    kept = sorted(set(previous.env) - set(key.env))
    if kept:
        log.info(
            "%s was built with set-env %s, not given now: reused (`dgr clean build` rebuilds without)",
            ws.target,
            ", ".join(kept),
        )
    return True
