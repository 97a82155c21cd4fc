"""The fault suite's harness: a case, the project it breaks, and what every failure must hold.

A :class:`Case` writes bad inputs over a copy of a project that built fine (so that there are
previous outputs to lose), runs one dgr command, and :func:`check_failure` asserts what
docs/reliability.md promises for every failure:

- the exit code (1: the work failed; 2: bad usage);
- one error message (one `error` line at the default log level; details may follow it as
  `  | ` lines) matching the case's pattern, which names the file (and line), the key or
  the reference at fault;
- no traceback anywhere in the output;
- nothing written outside the project's target, the store and the cache: the rest of the
  test's folder is unchanged, and the temporary folder dgr was given (TMPDIR) is empty;
- the previous outputs (image.aci, manifest.json, version, the OCI layout) intact;
- no temporary file, work folder or half-written output left in the target or the store;
- then the case's fix is applied and the same command run again must succeed: the next run
  needs no manual cleanup.

Mounts and processes left behind are caught by the `_no_leaks` fixture of tests/conftest.py
(the suite is marked `integration`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dgr.cli import main

NAME = "example.com/aci-fault"
BASE_MANIFEST = f"name: {NAME}:1\n"
OUTPUTS = ("image.aci", "manifest.json", "version", "image.id", "oci/index.json")
ERROR_LINE = re.compile(r"^\d\d:\d\d:\d\d error (?!  \|)(.*)$")


@dataclass(frozen=True)
class Link:
    """A symlink to write in a project (instead of a file's text)."""

    target: str


Content = str | bytes | Link


@dataclass(frozen=True)
class Case:
    """One bad input or fault: files written over the base project, a command, what it says."""

    id: str
    message: str  # a regex the one error line must match (search)
    files: Mapping[str, Content] = field(default_factory=dict)
    command: tuple[str, ...] = ("build",)
    code: int = 1
    config: str = ""  # added to config.yml
    # Called with the Env after the files are written (e.g. start a server, make a folder).
    setup: Callable[[Env], None] | None = None
    # Called with the Env to repair the project; default: remove `files`, restore the manifest.
    fix: Callable[[Env], None] | None = None
    rerun: tuple[str, ...] | None = None  # the command after the fix (default: `command`)

    def __str__(self) -> str:
        return self.id


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Env:
    """The folders of one case: the project (with its previous outputs), home, store, TMPDIR."""

    root: Path
    project: Path
    home: Path
    store: Path
    tmp: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def target(self) -> Path:
        return self.project / "target"

    def write(self, files: Mapping[str, Content]) -> None:
        for rel, content in files.items():
            path = self.project / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink() or path.is_file():
                path.unlink()
            if isinstance(content, Link):
                os.symlink(content.target, path)
            elif isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
                if rel.startswith("runlevels/") or rel.endswith(".sh"):
                    path.chmod(0o755)

    def remove(self, files: Mapping[str, Content]) -> None:
        for rel in files:
            path = self.project / rel
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)

    def config(self, text: str) -> None:
        (self.home / "config.yml").write_text(self.base_config + text)

    @property
    def base_config(self) -> str:
        return str(self.extra["base_config"])


def dgr(env: Env, args: Sequence[str], capfd: pytest.CaptureFixture[str]) -> Result:
    """Run the CLI in-process, as the user would (TMPDIR is the case's own folder)."""
    import tempfile

    saved = tempfile.tempdir
    tempfile.tempdir = str(env.tmp)
    try:
        code = main(["-H", str(env.home), "-W", str(env.project), *args])
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    finally:
        tempfile.tempdir = saved
    out, err = capfd.readouterr()
    return Result(code, out, err)


def dgr_process(env: Env, args: Sequence[str], **popen: object) -> subprocess.Popen[bytes]:
    """The CLI as a process of its own (for signals), in a session of its own."""
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "dgr.cli", "-H", str(env.home), "-W", str(env.project), *args],
        start_new_session=True,
        env={**os.environ, "TMPDIR": str(env.tmp)},
        **popen,
    )


# --- what every failure must hold ------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "-"


def outputs(env: Env) -> dict[str, str]:
    return {name: digest(env.target / name) for name in OUTPUTS}


def snapshot(root: Path, skip: Sequence[Path]) -> dict[str, tuple[int, int, str]]:
    """Every path under root (but `skip`, and the `target` folder of any project): its type
    and size, a symlink's target."""
    found: dict[str, tuple[int, int, str]] = {}
    skipped = {str(p) for p in skip}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d
            for d in dirnames
            if os.path.join(dirpath, d) not in skipped
            and not (d == "target" and os.path.isfile(os.path.join(dirpath, "aci-manifest.yml")))
        ]
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            if path in skipped:
                continue
            st = os.lstat(path)
            link = os.readlink(path) if os.path.islink(path) else ""
            found[os.path.relpath(path, root)] = (
                st.st_mode,
                st.st_size if not os.path.isdir(path) else 0,
                link,
            )
    return found


def untouched_areas(env: Env) -> list[Path]:
    """What dgr may write: the project's target, the store, its own temporary folder."""
    return [env.target, env.store, env.tmp]


def error_lines(err: str) -> list[str]:
    return [m.group(1) for line in err.splitlines() if (m := ERROR_LINE.match(line))]


def check_message(result: Result, case: Case) -> None:
    text = result.out + result.err
    assert "Traceback" not in text, text
    assert result.code == case.code, f"exit code {result.code}, not {case.code}:\n{text}"
    if case.code == 2:  # argparse's usage error, or dgr's UsageError: one error line
        lines = [line for line in result.err.splitlines() if "error" in line]
    else:
        lines = error_lines(result.err)
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{result.err}"
    assert re.search(case.message, lines[0]), f"{case.message!r} not in {lines[0]!r}"


LEFTOVER = re.compile(r"^(\..*\.tmp|\.add-.*|fetch-.*|\.cp-.*|\.load-.*|work|run-.*|layer\.old)$")


def leftovers(env: Env, cache: Path | None = None) -> list[str]:
    """Temporary files, work folders and half-written outputs in the target, the store, the
    cache's downloads (this process's only: the cache is shared with other xdist workers)
    and the case's temporary folder."""
    found = []
    for place in (env.target, env.target / "tests", env.store / "images"):
        if place.is_dir():
            found += [str(p) for p in place.iterdir() if LEFTOVER.match(p.name)]
    downloads = cache / "downloads" if cache is not None else None
    if downloads is not None and downloads.is_dir():
        mine = f"fetch-{os.getpid()}-"
        found += [str(p) for p in downloads.iterdir() if p.name.startswith(mine)]
    found += [str(p) for p in env.tmp.iterdir()] if env.tmp.is_dir() else []
    return found
