"""The one door to host processes.

Every subprocess dgr starts goes through :func:`run`: it logs the command, captures the
output (optionally streaming it to a log file as it comes), enforces a timeout, kills the
whole process group on timeout or interrupt, and turns failure into a :class:`DgrError`.
Its processes die with dgr, even when dgr is killed (:func:`die_with_parent`): a SIGKILL
leaves no skopeo or gpg behind.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from dgr.errors import DgrError, ToolError, host_error
from dgr.log import TRACE, log

TAIL_LINES = 40


@dataclass(frozen=True)
class Result:
    """What a finished process left: its exit code and its (merged) output."""

    args: tuple[str, ...]
    returncode: int
    output: str

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.output.rstrip("\n").splitlines()[-lines:])


def require_tool(name: str, package: str | None = None) -> str:
    """The absolute path of host tool `name`, or a ToolError naming the package to install."""
    found = shutil.which(name)
    if found is None:
        pkg = package or name
        raise ToolError(f"{name} not found on this host", hint=f"install it: apt-get install {pkg}")
    return found


@functools.cache
def _prctl() -> Callable[..., int]:
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that has the kernel kill the child (SIGKILL) when the thread that
    started it dies, as bwrap's --die-with-parent does for sandboxes."""
    prctl = _prctl()  # loaded before the fork: the child only calls it

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    return arm


def _pump(
    stream: IO[bytes], sinks: list[IO[str]], keep: deque[str], full: list[str] | None, failed: list[OSError]
) -> None:
    """Read the output to its end; a sink that fails (a log on a full disk) is dropped and its
    error kept in `failed` for `run` to report: the process is still drained."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace")
        keep.append(line)
        if full is not None:
            full.append(line)
        for sink in list(sinks):
            try:
                sink.write(line)
                sink.flush()
            except OSError as exc:
                failed.append(exc)
                sinks.remove(sink)
    stream.close()


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdin: bytes | None = None,
    check: bool = True,
    log_file: IO[str] | None = None,
    echo: bool = False,
    keep_output: bool = True,
    error: type[DgrError] = ToolError,
    what: str | None = None,
    pass_fds: Sequence[int] = (),
) -> Result:
    """Run `args`, wait for it, and return its exit code and merged stdout/stderr.

    `log_file` receives the output line by line while the process runs; `echo` copies it to
    our stderr (used for `-L debug`). With `check`, a non-zero exit raises `error` whose
    message names `what` (default: the command) and whose details hold the output's tail.
    `pass_fds` stay open in the process (e.g. a memfd it reads as /proc/self/fd/N).
    """
    argv = tuple(str(a) for a in args)
    log.log(TRACE, "run: %s", shlex.join(argv))
    sinks: list[IO[str]] = []
    if log_file is not None:
        sinks.append(log_file)
    if echo:
        import sys

        sinks.append(sys.stderr)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
            preexec_fn=die_with_parent(),
        )
    except FileNotFoundError:
        raise ToolError(f"{argv[0]} not found on this host") from None
    keep: deque[str] = deque(maxlen=TAIL_LINES * 4)
    full: list[str] | None = [] if keep_output else None
    assert proc.stdout is not None
    failed: list[OSError] = []
    pump = threading.Thread(target=_pump, args=(proc.stdout, sinks, keep, full, failed), daemon=True)
    pump.start()
    try:
        if stdin is not None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        pump.join(5)
        raise error(f"{what or argv[0]} timed out after {timeout:.0f}s", details="".join(keep)) from None
    except BaseException:
        kill_group(proc)
        raise
    # What it left running (a helper that outlived its parent) would hold the output open.
    kill_group(proc)
    pump.join()
    if failed:
        doing = f"writing the output of {what or argv[0]}"
        raise host_error(failed[0], doing) or ToolError(f"{doing}: {failed[0]}")
    output = "".join(full) if full is not None else "".join(keep)
    result = Result(argv, proc.returncode, output)
    if check and proc.returncode != 0:
        raise error(
            f"{what or shlex.join(argv)} failed with exit code {proc.returncode}",
            details=result.tail(),
        )
    return result


def spawn(
    args: Sequence[str | os.PathLike[str]], *, session: bool = True, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start `args` without waiting (containers, port forwarders, dgr in its namespace).

    Logged as :func:`run` logs; the kernel kills it when dgr dies (as `run` does); in a session
    of its own unless `session` is False (`dgr run` attached to a terminal stays in its
    foreground). `popen` goes to subprocess.Popen (stdin, stdout, env, pass_fds...)."""
    argv = [str(a) for a in args]
    log.log(TRACE, "spawn: %s", shlex.join(argv))
    try:
        return subprocess.Popen(argv, start_new_session=session, preexec_fn=die_with_parent(), **popen)
    except FileNotFoundError:
        raise ToolError(f"{argv[0]} not found on this host") from None


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill `proc` and everything in its process group, then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
