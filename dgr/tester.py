"""Testing one built image (SPEC §7): a test container, wait.sh, bats with TAP.

A test container runs a `TestImage` (dgr/testimage.py: the image with what its tests add,
built beforehand by the project's plan). The container starts through `/dgr/bin/start`
(prestart included) with a small *keeper* as its command: it links busybox's applets into
`/dgr/tester/bin` (on PATH, last, only for the test commands), tells the host that prestart
is over, starts the app's exec in the background and stays alive, so tests can exec into
the container whatever the app does.
Then the manifest's readiness check (dgr/readiness.py) is waited for and `tests/wait.sh`
polled, and each `.bats` file runs with `bats --tap`; the TAP output is parsed into one
result per `@test` (dgr/tap.py). A test container's TCP ports reach the test process through
host listeners (`address(port)`, dgr/ports.py).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dgr.container import Container, ContainerSpec, Volume
from dgr.errors import ContainerError, DgrError
from dgr.internals_binaries import BUSYBOX
from dgr.leftovers import make_dir
from dgr.log import level_name, log
from dgr.ports import HostPorts, declared_port
from dgr.process import Result
from dgr.readiness import Readiness
from dgr.sandbox import DEFAULT_PATH
from dgr.tap import BatsError, BatsRun, list_bats_tests, parse_tap
from dgr.testimage import (
    STATUS_IN_IMAGE,
    TESTER_BIN,
    TESTS_IN_IMAGE,
    WAIT_SCRIPT,
    TestImage,
    app_test_environment,
    bats_layer,
    files_layer,
    make_status_dir,
)

if TYPE_CHECKING:
    from dgr.manifest import Port
    from dgr.options import BuildOptions

RUN_PREFIX = "run-"  # a test run's folder in target/tests/ (dgr/leftovers.py)

# After prestart (the container's command runs through /dgr/bin/start): make busybox's
# applets available to test commands, say that prestart is over, start the app in the
# background and keep the container alive whatever the app does.
KEEPER = r"""
B=/dgr/bin/busybox
$B --install -s /dgr/tester/bin 2>/dev/null
$B touch /dgr/tester/status/started
"$@" &
app=$!
echo "$app" > /dgr/tester/status/app.pid
wait "$app"
echo "$?" > /dgr/tester/status/app.exit
while :; do $B sleep 3600; done
"""


class WaitError(DgrError):
    """The container never got ready: tests/wait.sh or the manifest's readiness check never
    succeeded."""


@dataclass(frozen=True)
class TesterOptions:
    """How to run tests: wait.sh polling, time limits, keeping the container's files."""

    __test__ = False  # not a pytest test class

    wait_tries: int = 60
    wait_interval: float = 1.0
    wait_timeout: float = 60.0  # one wait.sh run
    start_timeout: float = 120.0  # prestart
    bats_timeout: float = 1800.0  # one bats file
    keep: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)


class TesterContainer:
    """A started test container: the image with its tests, prestart done, app started."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        container: Container,
        run_dir: Path,
        project: Path,
        options: TesterOptions,
        manifest_ports: Sequence[Port] = (),
        readiness: Readiness | None = None,
    ) -> None:
        self.container = container
        self.run_dir = run_dir
        self.project = project
        self.options = options
        self.manifest_ports = tuple(manifest_ports)
        self.readiness = readiness
        self.host_ports = HostPorts(container.init_pid)

    # The inspection API of the running container (used by Python tests).
    def exec(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = 60
    ) -> Result:
        """Run `argv` in the container's working directory; returns exit code and output."""
        # Container.exec passes `nsenter -w<dir>`, which opens <dir> on the host before
        # entering the container (bash then fails getcwd); `cd` inside the container instead.
        workdir = self.container.spec.working_directory or "/"
        wrapped = [BUSYBOX, "sh", "-c", 'cd "$0" && exec "$@"', workdir, *argv]
        return self.container.exec(wrapped, env=env, timeout=timeout)

    def read_file(self, path: str) -> str:
        """The content of `path` in the container (ContainerError if it cannot be read)."""
        result = self.exec([BUSYBOX, "cat", path])
        if result.returncode != 0:
            raise ContainerError(f"cannot read {path} in container {self.name}", details=result.output)
        return result.output

    def logs(self) -> str:
        return self.container.logs()

    def ip_addresses(self) -> list[str]:
        """The container's IPv4 addresses (only loopback: it has its own network namespace)."""
        return self.container.ip_addresses()

    def ports(self) -> dict[str, int]:
        """The app's ports by name, as the manifest declares them (inside the container)."""
        return {p.name: p.port for p in self.manifest_ports}

    def address(self, port: int | str) -> tuple[str, int]:
        """`(host, port)` where the test process reaches the container's TCP `port` (a number
        or a name the manifest declares): a listener on the host's loopback, forwarded into
        the container's network namespace, started on first use, gone with the container."""
        __tracebackhide__ = True  # a bad port: pytest shows the test's line, not ours
        return self.host_ports.address(declared_port(port, self.manifest_ports, self.name))

    def running(self) -> bool:
        return self.container.running()

    def app_exit_code(self) -> int | None:
        """The app's exit code once it has exited (the container itself stays up)."""
        try:
            return int((self.run_dir / "status" / "app.exit").read_text().strip())
        except (OSError, ValueError):
            return None

    @property
    def name(self) -> str:
        return self.container.spec.name

    def test_env(self) -> dict[str, str]:
        """The environment of test commands: PATH extended with busybox's applets, last."""
        path = self.container.spec.env.get("PATH", DEFAULT_PATH)
        env = {"PATH": f"{path}:{TESTER_BIN}"}
        if "HOME" not in self.container.spec.env:
            env["HOME"] = "/root"
        return env

    def wait_started(self) -> None:
        """Wait until prestart is over (ContainerError with the logs if the container died)."""
        marker = self.run_dir / "status" / "started"
        deadline = time.monotonic() + self.options.start_timeout
        while not marker.exists():
            if not self.container.running():
                raise ContainerError(
                    f"container {self.name} stopped during start (prestart failed?)",
                    details=_tail(self.logs()),
                )
            if time.monotonic() > deadline:
                raise ContainerError(
                    f"container {self.name}: prestart still running after {self.options.start_timeout:.0f}s",
                    details=_tail(self.logs()),
                )
            time.sleep(0.01)

    def wait_ready(self, tries: int | None = None, interval: float | None = None) -> None:
        """Wait for the manifest's readiness check, then poll tests/wait.sh until it exits 0
        (`tries` and `interval` are wait.sh's); WaitError with the last output otherwise."""
        if self.readiness is not None:
            wait_for_check(self, self.readiness)
        wait_ready(
            self,
            self.options.wait_tries if tries is None else tries,
            self.options.wait_interval if interval is None else interval,
        )

    def run_bats(self, file: str, only: str | None = None) -> BatsRun:
        """Run one bats file of the tests folder (`file` is its name) with TAP output; with
        `only`, just the `@test` of that name."""
        return run_bats(self, file, only)

    def stop(self) -> None:
        self.host_ports.close()
        self.container.stop()
        if not self.options.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> TesterContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def start_test_container(
    test_image: TestImage,
    options: BuildOptions,
    tester: TesterOptions | None = None,
    *,
    name: str | None = None,
    netns: str | None = None,
) -> TesterContainer:
    """Start a container of `test_image` and wait for prestart (not wait.sh).

    `name` replaces the container's name (its hostname); `netns` is a network namespace to
    join instead of a new one (the apps of a pod, see dgr/pod.py).
    """
    tester = tester or TesterOptions(keep=options.keep)
    result, layers = test_image.image, test_image.layers
    manifest = result.manifest
    base = result.workspace.target / "tests"
    base.mkdir(parents=True, exist_ok=True)
    run_dir = make_dir(base, RUN_PREFIX)
    try:
        files = files_layer(manifest.project / "tests", run_dir / "layer", layers)
        status = make_status_dir(run_dir)
        env = app_test_environment(manifest)
        env.update(TESTER="TRUE", LOG_LEVEL=level_name(options.log_level))
        env.update(tester.extra_env)
        app = manifest.aci.app
        spec = ContainerSpec(
            name=name or result.name.app_name,
            netns=netns,
            layers=(*layers, bats_layer(options.config.cache_path), files),
            exec=(BUSYBOX, "sh", "-c", KEEPER, "keeper", *app.exec),
            env=env,
            working_directory=app.working_directory or "/",
            volumes=(Volume(status, STATUS_IN_IMAGE),),
        )
        container = Container(spec, state_dir=run_dir / "container", keep=tester.keep)
        running = TesterContainer(
            container, run_dir, manifest.project, tester, app.ports, manifest.readiness()
        )
        log.info("Starting test container of %s", result.name)
        container.start()
    except BaseException:
        if not tester.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    try:
        running.wait_started()
    except BaseException:
        running.stop()
        raise
    return running


def run_check(container: TesterContainer, readiness: Readiness) -> tuple[bool, str]:
    """Run the readiness check once: whether it succeeded, and its output."""
    if readiness.kind == "log":
        logs = container.logs()
        return re.search(readiness.pattern, logs, re.MULTILINE) is not None, _tail(logs, 20)
    argv = readiness.argv()
    assert argv is not None
    try:
        result = container.exec(argv, env=container.test_env(), timeout=readiness.check_time_limit)
    except ContainerError as exc:  # timed out
        return False, f"{exc.message}\n{exc.details or ''}"
    return result.returncode == 0, f"(exit code {result.returncode})\n{_tail(result.output)}"


def wait_for_check(container: TesterContainer, readiness: Readiness) -> None:
    """Run the check until it succeeds: first soon again, then at most `interval` apart,
    for at most `timeout` seconds (WaitError naming the check, with its last output)."""
    deadline = time.monotonic() + readiness.timeout
    pause, tries = 0.01, 0
    while True:
        if not container.running():
            raise ContainerError(
                f"container {container.name} stopped while waiting for its {readiness.describe()}",
                details=_tail(container.logs()),
            )
        tries += 1
        ready, output = run_check(container, readiness)
        if ready:
            log.debug("%s succeeded after %d tries", readiness.describe(), tries)
            return
        if time.monotonic() + pause > deadline:
            break
        time.sleep(pause)
        pause = min(pause * 2, readiness.interval)
    details = f"last output of the check:\n{output.strip() or '(none)'}"
    app_exit = container.app_exit_code()
    if app_exit is not None and readiness.kind != "log":
        logs = _tail(container.logs(), 20)
        details += f"\n(the app exited with code {app_exit}{'; its output:' if logs else ''})\n{logs}"
    raise WaitError(
        f"container {container.name} never got ready: {readiness.describe()} did not succeed "
        f"within {readiness.timeout:g}s ({tries} tries)",
        path=manifest if (manifest := container.project / "aci-manifest.yml").is_file() else None,
        key="tester.readiness",
        details=details,
    )


def wait_ready(container: TesterContainer, tries: int, interval: float) -> None:
    """Run /dgr/tests/wait.sh (when the project has one) until it succeeds, at most `tries` times."""
    if not (container.project / "tests" / WAIT_SCRIPT).is_file():
        return
    argv = [BUSYBOX, "sh", "-c", f'cd / && exec "{TESTS_IN_IMAGE}/{WAIT_SCRIPT}"']
    last: Result | None = None
    for attempt in range(max(tries, 1)):
        if not container.running():
            raise ContainerError(
                f"container {container.name} stopped while waiting for wait.sh",
                details=_tail(container.logs()),
            )
        last = container.exec(argv, env=container.test_env(), timeout=container.options.wait_timeout)
        if last.returncode == 0:
            log.debug("wait.sh succeeded after %d tries", attempt + 1)
            return
        if attempt + 1 < tries:
            time.sleep(interval)
    assert last is not None
    details = _tail(last.output) or "(no output)"
    app_exit = container.app_exit_code()
    if app_exit is not None:
        details += f"\n(the app exited with code {app_exit}; container log:)\n{_tail(container.logs(), 20)}"
    raise WaitError(
        f"wait.sh never succeeded ({max(tries, 1)} tries, {interval:g}s apart; "
        f"last exit code {last.returncode})",
        path=container.project / "tests" / WAIT_SCRIPT,
        details=details,
    )


def bats_filter(name: str) -> str:
    """A `bats --filter` regex (POSIX ERE, matched against the name as written) that matches
    the test named `name` and no other."""
    escaped = "".join(f"[{c}]" if c in ".[$()|*+?{" else f"\\{c}" if c in "^\\" else c for c in name)
    return f"^{escaped}$"


def run_bats(container: TesterContainer, file: str, only: str | None = None) -> BatsRun:
    """Run `/dgr/tests/<file>` with `bats --tap` inside the container and parse its TAP;
    with `only`, just the `@test` of that name (a rerun)."""
    if only is None:
        names = tuple(list_bats_tests(container.project / "tests" / file))
        selection = []
    else:
        names, selection = (only,), ["--filter", bats_filter(only)]
    result = container.exec(
        [f"{TESTER_BIN}/bats", "--tap", *selection, f"{TESTS_IN_IMAGE}/{file}"],
        env=container.test_env(),
        timeout=container.options.bats_timeout,
    )
    report = parse_tap(result.output)
    if not report.results and result.returncode != 0:
        raise BatsError(
            f"bats failed on {file} with exit code {result.returncode}",
            path=container.project / "tests" / file,
            details=_tail(result.output),
        )
    return BatsRun(file, result.returncode, result.output, report, names)


def bats_files(project: Path) -> list[Path]:
    """The project's bats files (tests/*.bats), sorted by name."""
    tests = project / "tests"
    return sorted(tests.glob("*.bats")) if tests.is_dir() else []


def run_image_tests(
    test_image: TestImage, options: BuildOptions, tester: TesterOptions | None = None
) -> list[BatsRun]:
    """Start the test container, wait for it, run every bats file; stop it. For scripts."""
    with start_test_container(test_image, options, tester) as container:
        container.wait_ready()
        return [container.run_bats(f.name) for f in bats_files(test_image.image.manifest.project)]


__all__ = [
    "TesterContainer",
    "TesterOptions",
    "WaitError",
    "bats_files",
    "run_bats",
    "run_image_tests",
    "start_test_container",
    "wait_ready",
]
