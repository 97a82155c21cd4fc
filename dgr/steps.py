"""Build steps: the runlevels and copies of a build, run in order in one sandbox, their
output logged; a failing one named with its script (SPEC §4), a debugging shell on request."""

from __future__ import annotations

import re
import signal
import sys
import time
from dataclasses import dataclass, replace

from dgr.buildrun import ACI_HOME, STAGES_IN_IMAGE, TEMPLATER_INPUTS, BuildRun
from dgr.errors import BuildError
from dgr.images import Dependency, flatten
from dgr.log import log
from dgr.process import kill_group
from dgr.sandbox import Sandbox
from dgr.staging import has_scripts, inside_project

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _failed_script(output: str) -> str | None:
    """What execute_files (functions.sh) said about the script that failed: `PATH (exit N)`,
    or `PATH timed out (after Ns)`."""
    for line in reversed(output.splitlines()):
        if "Script failed -> " in line:
            return line.split("Script failed -> ", 1)[1].strip()
        if "Script timed out -> " in line:
            script, _, after = line.split("Script timed out -> ", 1)[1].strip().partition(" ")
            return f"{script} timed out {after}".strip()
    return None


# Runs build steps in one sandbox: each step is `KIND LABEL PATH` in "$@". The umask is fixed so
# that the modes of the files that steps create do not depend on the host's (reproducibility).
# Markers (`### dgr step: ...`) let dgr log each step as it starts and name a failing one.
STEPS_SCRIPT = r"""
umask 022
. /dgr/bin/functions.sh
B=/dgr/bin/busybox
while [ "$#" -ge 3 ]; do
  kind=$1 label=$2 path=$3
  shift 3
  echo "### dgr step: $label"
  case $kind in
    runlevel) execute_files "$path" || exit 1 ;;
    copy) $B cp -a "$path/." / || exit 1 ;;
    files) if [ -d "$path" ]; then $B cp -R "$path/." / || exit 1; fi ;;
    export) for d in /dgr/attributes /dgr/templates; do
        if [ -e "$d" ]; then $B cp -a "$d" "$path/" || exit 1; fi
      done ;;
  esac
done
"""


STEP_MARKER = "### dgr step: "


@dataclass(frozen=True)
class Step:
    """One build step run in a sandbox: a runlevel, or a copy into the image rootfs."""

    kind: str  # runlevel | copy | files | export (/dgr/attributes and /dgr/templates to `path`)
    label: str
    path: str


class _StepLog:
    """Receives the steps' output: writes it to the build log, logs each step as it starts."""

    def __init__(self, b: BuildRun) -> None:
        self.out = b.log_file
        self.echo = b.options.echo
        self.current = ""
        self.started = time.monotonic()

    def write(self, text: str) -> int:
        self.out.write(text)
        if self.echo:
            sys.stderr.write(text)
        for line in text.splitlines():
            if line.startswith(STEP_MARKER):
                if self.current:
                    log.debug("%s done in %.2fs", self.current, time.monotonic() - self.started)
                self.current = line[len(STEP_MARKER) :].strip()
                self.started = time.monotonic()
                log.info("%s ...", self.current)
        return len(text)

    def flush(self) -> None:
        self.out.flush()


SHELL = ["/dgr/bin/busybox", "sh"]


def step_label(name: str) -> str:
    """The label of the step `--shell-after NAME` names: a runlevel, or `files`."""
    return "copying files" if name == "files" else f"runlevel {name}"


def run_steps(b: BuildRun, sandbox: Sandbox, steps: list[Step]) -> bool:
    """Run `steps` in order in one `sandbox`; BuildError naming the failing step and script.

    With `shell_after`, a debugging shell opens in the sandbox after that step (the build goes
    on when it is left; returns whether it opened); with `shell_on_failure`, after a failing
    step (the build then fails).
    """
    label = step_label(b.options.shell_after) if b.options.shell_after else None
    at = next((i + 1 for i, item in enumerate(steps) if item.label == label), 0)
    if at:
        _run_steps(b, sandbox, steps[:at])
        debug_shell(sandbox, f"{label} done")
    _run_steps(b, sandbox, steps[at:])
    return bool(at)


def debug_shell(sandbox: Sandbox, why: str) -> None:
    """An interactive shell (`busybox sh` on our stdin, stdout and stderr) in a sandbox like
    `sandbox`: the same root, overlays, mounts and environment, so it sees what the steps left.
    It runs in a session of its own, as every sandbox does: Ctrl-C clears its line but cannot
    stop a command it runs, and dgr ignores Ctrl-C meanwhile. `exit` or Ctrl-D leaves it."""
    log.warning("%s: a shell opens in its sandbox; leave it with exit or Ctrl-D", why)
    shell = replace(sandbox, env={**sandbox.env, "PS1": f"dgr ({why}) # "})
    proc = shell.spawn(SHELL)
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)  # after the spawn: not inherited
    try:
        proc.wait()
    except BaseException:
        kill_group(proc)
        raise
    finally:
        signal.signal(signal.SIGINT, interrupt)


_DISK_FULL = "No space left on device"


class _StepsTimedOut(BuildError):
    """The build's runlevels took longer than its timeout."""


def _run_steps(b: BuildRun, sandbox: Sandbox, steps: list[Step]) -> None:
    if not steps:
        return
    argv = ["/dgr/bin/busybox", "sh", "-c", STEPS_SCRIPT, "sh"]
    for item in steps:
        argv += [item.kind, item.label, item.path]
    sink = _StepLog(b)
    deadline = b.deadline
    timeout = None if deadline is None else max(deadline - time.monotonic(), 0.001)
    try:
        # With check=False, `error` is raised only on timeout.
        result = sandbox.run(
            argv, check=False, log_file=sink, keep_output=False, timeout=timeout, error=_StepsTimedOut
        )
    except _StepsTimedOut as exc:
        raise BuildError(
            f"the build timed out after {b.timeout:g}s, in {sink.current or 'a build step'}",
            path=b.manifest.path if b.manifest.path.exists() else b.project,
            key="build.timeout",
            details=strip_ansi(exc.details or ""),
            hint=f"raise build.timeout in the manifest or --timeout; full log in {b.ws.log}",
        ) from None
    if result.returncode != 0:
        script = _failed_script(strip_ansi(result.output))
        what = f"script {script}" if script else f"exit code {result.returncode}"
        if b.options.shell_on_failure:
            debug_shell(sandbox, f"{sink.current or 'build step'} failed")
        tail = strip_ansi(result.tail())
        full = "the disk is full (No space left on device): free some space; " if _DISK_FULL in tail else ""
        raise BuildError(
            f"{sink.current or 'build step'} failed: {what}",
            path=b.project,
            details=tail,
            hint=f"{full}full log in {b.ws.log}",
        )


def builder_steps(b: BuildRun, phase: str) -> list[Step]:
    """The steps in the builder root: the builder dependencies' inherit-build-early and
    the `builder` runlevel ("early"), or their inherit-build-late ("late")."""
    steps = []
    if b.builder_deps and _deps_have(b.builder_deps, f"inherit-build-{phase}"):
        steps.append(
            Step(
                "runlevel",
                f"runlevel inherit-build-{phase} (builder)",
                f"/dgr/runlevels/inherit-build-{phase}",
            )
        )
    if phase == "early" and has_scripts(b.project / "runlevels" / "builder"):
        steps.append(Step("runlevel", "runlevel builder", f"{ACI_HOME}/runlevels/builder"))
    return steps


def image_steps(b: BuildRun, inherits: bool) -> list[Step]:
    """The steps in the image rootfs, in the original's order (SPEC §4), empty ones left out."""
    project, runlevels = b.project / "runlevels", f"{ACI_HOME}/runlevels"
    steps = []
    if inherits:
        steps.append(Step("copy", "storing inherit runlevels", f"{STAGES_IN_IMAGE}/inherit"))
    if inherits or _deps_have(b.aci_deps, "inherit-build-early"):
        steps.append(Step("runlevel", "runlevel inherit-build-early", "/dgr/runlevels/inherit-build-early"))
    if has_scripts(project / "build"):
        steps.append(Step("runlevel", "runlevel build", f"{runlevels}/build"))
    steps.append(
        Step("copy", "copying attributes, templates and prestart runlevels", f"{STAGES_IN_IMAGE}/project")
    )
    if inside_project(b.project, "files") is not None:
        steps.append(Step("files", "copying files", f"{ACI_HOME}/files"))
    if has_scripts(project / "build-late"):
        steps.append(Step("runlevel", "runlevel build-late", f"{runlevels}/build-late"))
    if inherits or _deps_have(b.aci_deps, "inherit-build-late"):
        steps.append(Step("runlevel", "runlevel inherit-build-late", "/dgr/runlevels/inherit-build-late"))
    steps.append(Step("export", "reading the templater's inputs", TEMPLATER_INPUTS))
    return steps


def _deps_have(deps: tuple[Dependency, ...], runlevel: str) -> bool:
    return any(has_scripts(d.layer / "dgr" / "runlevels" / runlevel) for d in flatten(deps))
