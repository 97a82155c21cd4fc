"""Testing one built image (SPEC §7): a test container, wait.sh, bats with TAP.

The test container runs the image's layers plus, bottom to top: `tester.aci.dependencies`
(below the image), a real build of the project's `tests/` folder when it holds runlevels,
attributes, files or templates (as the original's test image), a cached *bats layer*
(`/dgr/tester`: static bash, bats-core, a `bats` wrapper) and a per-run layer holding the
test files in `/dgr/tests` plus `/bin/sh`, `/bin/bash` and `/usr/bin/env` when the image has
none of them (bats files and wait.sh are usually written for those).

The container starts through `/dgr/bin/start` (prestart included) with a small *keeper* as
its command: it links busybox's applets into `/dgr/tester/bin` (on PATH, last, only for the
test commands), tells the host that prestart is over, starts the app's exec in the
background and stays alive, so tests can exec into the container whatever the app does.
Then the manifest's readiness check (dgr/readiness.py) is waited for and `tests/wait.sh`
polled, and each `.bats` file runs with `bats --tap`; the TAP output is parsed into one
result per `@test` (dgr/tap.py). A test container's TCP ports reach the test process through
host listeners (`address(port)`, dgr/ports.py).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dgr import userns
from dgr.cache import cached_folder
from dgr.container import Container, ContainerSpec, Volume
from dgr.errors import ContainerError, DgrError, ToolError
from dgr.leftovers import make_dir
from dgr.log import level_name, log
from dgr.ports import HostPorts, declared_port
from dgr.process import Result, require_tool
from dgr.readiness import Readiness
from dgr.sandbox import DEFAULT_PATH
from dgr.tap import BatsError, BatsRun, list_bats_tests, parse_tap

if TYPE_CHECKING:
    from dgr.build import BuildOptions, BuildResult
    from dgr.manifest import Manifest, Port

TESTER_ROOT = "/dgr/tester"
TESTER_BIN = f"{TESTER_ROOT}/bin"
TESTS_IN_IMAGE = "/dgr/tests"
STATUS_IN_IMAGE = f"{TESTER_ROOT}/status"
BUSYBOX = "/dgr/bin/busybox"
WAIT_SCRIPT = "wait.sh"
RUN_PREFIX = "run-"  # a test run's folder in target/tests/ (dgr/leftovers.py)
TESTS_TARGET = "tests-target"
# A tests/ folder holding one of these is a project of its own (the original's test image).
TEST_IMAGE_PARTS = ("runlevels", "attributes", "files", "templates")
BATS_LAYER_FORMAT = "1"

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


# --- environment ------------------------------------------------------------------------------


def app_test_environment(manifest: Manifest) -> dict[str, str]:
    """The app's environment overridden by `tester.aci.app.environment` (tester wins)."""
    env = {e.name: e.value for e in manifest.aci.app.environment}
    env.update({e.name: e.value for e in manifest.tester.environment})
    return env


# --- layers -----------------------------------------------------------------------------------


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


# --- the test image ---------------------------------------------------------------------------


def needs_test_build(project: Path) -> bool:
    """Whether `project/tests` customises the test image (runlevels, attributes, ...)."""
    tests = project / "tests"
    return any((tests / part).is_dir() for part in TEST_IMAGE_PARTS)


def generated_test_manifest(result: BuildResult) -> Manifest:
    """The generated manifest of the test image (as the original's, name `<name>-tests`)."""
    from dataclasses import replace

    from dgr.manifest import Aci, Manifest
    from dgr.names import ImageName

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


def image_layers_for_tests(result: BuildResult, options: BuildOptions) -> tuple[Path, ...]:
    """The image's layers with the tester's dependencies below and the tests/ build above."""
    from dgr.build import build, flatten
    from dgr.resolve import resolve_dependencies

    manifest = result.manifest
    tester_deps = resolve_dependencies(manifest.tester.dependencies, manifest, options)
    top: tuple[Path, ...] = ()
    if needs_test_build(manifest.project):
        generated = generated_test_manifest(result)
        tests = build(
            generated.project, options, manifest=generated, target=result.workspace.target / TESTS_TARGET
        )
        top = (tests.workspace.layer,)
    image = result.layers
    below = tuple(dict.fromkeys(d.layer for d in flatten(tester_deps) if d.layer not in image))
    return (*below, *image, *top)


# --- templates --------------------------------------------------------------------------------


def _merge_layers(layers: Sequence[Path], rel: str, dest: Path) -> None:
    """Copy `rel` of every layer (bottom first, upper wins) into `dest` (no whiteouts)."""

    def ignore(directory: str, names: list[str]) -> list[str]:
        skipped = []
        for name in names:
            path = os.path.join(directory, name)
            if not (os.path.islink(path) or os.path.isdir(path) or os.path.isfile(path)):
                skipped.append(name)  # overlay whiteouts (character devices)
        return skipped

    dest.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        source = layer / rel
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, dest, symlinks=True, ignore=ignore, dirs_exist_ok=True)


def _template_origin(path: str | None, merged: Path, result: BuildResult) -> str | None:
    """The project or dependency file that `path` (in the merged templates copy) came from."""
    if path is None or not Path(path).is_relative_to(merged):
        return path
    rel = Path(path).relative_to(merged)
    own = result.manifest.project / "templates" / rel
    if own.exists():
        return str(own)
    for layer in reversed(result.layers):
        candidate = layer / "dgr" / "templates" / rel
        if candidate.exists():
            return str(candidate)
    return path


def override_files(project: Path) -> list[Path]:
    """The project's template overrides (tests/overrides/*.json), sorted by name."""
    folder = project / "tests" / "overrides"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def check_templates(result: BuildResult, work: Path) -> list[str]:
    """Render the image's templates as its prestart would, on the host, into `work`.

    Once with the default attributes (those of the image and its dependencies, app and
    tester environment), then once per tests/overrides/*.json given as TEMPLATER_OVERRIDE.
    checkCmd is not run (it belongs inside the container). Returns what was rendered
    (`default`, then the override file names); raises TemplateError/AttributesError naming
    the override in the hint.
    """
    from dgr.templater import run as render

    attributes = work / "attributes"
    templates = work / "templates"
    _merge_layers(result.layers, "dgr/attributes", attributes)
    _merge_layers(result.layers, "dgr/templates", templates)
    env = app_test_environment(result.manifest)
    env.pop("TEMPLATER_OVERRIDE", None)
    env.pop("TEMPLATER_OVERRIDE_BASE64", None)
    variants: list[tuple[str, str | None]] = [("default", None)]
    variants += [(f.name, f.read_text(encoding="utf-8")) for f in override_files(result.manifest.project)]
    rendered = []
    for name, override in variants:
        out = work / "rendered" / name
        out.mkdir(parents=True)
        variant_env = dict(env)
        if override is not None:
            variant_env["TEMPLATER_OVERRIDE"] = override
        try:
            render(
                attributes, templates, out, variant_env, override_var="TEMPLATER_OVERRIDE", run_checks=False
            )
        except DgrError as exc:
            if override is not None:
                hint = f"with the override tests/overrides/{name}"
                exc.hint = f"{hint}; {exc.hint}" if exc.hint else hint
            exc.path = _template_origin(exc.path, templates, result)
            raise
        rendered.append(name)
    return rendered


# --- running ----------------------------------------------------------------------------------


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
    result: BuildResult,
    options: BuildOptions,
    tester: TesterOptions | None = None,
    *,
    name: str | None = None,
    netns: str | None = None,
) -> TesterContainer:
    """Assemble the test image of `result`, start it and wait for prestart (not wait.sh).

    `name` replaces the container's name (its hostname); `netns` is a network namespace to
    join instead of a new one (the apps of a pod, see dgr/pod.py).
    """
    tester = tester or TesterOptions(keep=options.keep)
    manifest = result.manifest
    layers = image_layers_for_tests(result, options)
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
    result: BuildResult, options: BuildOptions, tester: TesterOptions | None = None
) -> list[BatsRun]:
    """Start the test container, wait for it, run every bats file; stop it. For scripts."""
    with start_test_container(result, options, tester) as container:
        container.wait_ready()
        return [container.run_bats(f.name) for f in bats_files(result.manifest.project)]


def pytest_arguments(
    project: Path, options: BuildOptions, *, home: str | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """The pytest command line of `dgr test` for `project` (the pytest_dgr options)."""
    from dgr.manifest_load import load_manifest
    from dgr.workspace import target_dir

    argv = [str(project), f"--dgr-log-level={level_name(options.log_level).lower()}"]
    if home:
        argv.append(f"--dgr-home={home}")
    if options.targets_root is not None:
        argv.append(f"--dgr-target={options.targets_root}")
    argv += [f"--dgr-set-env={name}={value}" for name, value in options.set_env.items()]
    if options.keep:
        argv.append("--dgr-keep")
    try:
        # pytest's cache in the target, not in the project (whose files are build inputs)
        target = target_dir(load_manifest(project), options.config, options.targets_root)
        argv += ["-o", f"cache_dir={target / 'pytest-cache'}"]
    except DgrError:
        pass  # the build item reports it
    return [*argv, *extra]


__all__ = [
    "TesterContainer",
    "TesterOptions",
    "WaitError",
    "bats_files",
    "bats_layer",
    "check_templates",
    "pytest_arguments",
    "run_bats",
    "run_image_tests",
    "start_test_container",
    "app_test_environment",
    "wait_ready",
]
