"""The collectors and items of one image folder (SPEC §8).

An image folder (holding `aci-manifest.yml`) becomes an :class:`ImageDirectory` whose items
run in this order: `build`, `templates`, one item per bats `@test` (grouped by `.bats` file),
then the folder's `tests/test_*.py` modules. They share one :class:`ImageState` (in the
directory's stash): the build result, the started test container, each bats file's run.
A failed build fails the `build` item with its log; the image's other items then fail with
one short line, `build of <folder> failed`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import pytest

from dgr.errors import ContainerError, DgrError
from dgr.leftovers import make_dir, temporary_dir
from dgr.plan import Built, Plan, assemble_test_image, image_keys_for_tests, make_plan
from dgr.tap import BatsResult, BatsRun, bats_tests
from dgr.templatecheck import check_templates
from dgr.tester import TesterContainer, bats_files, start_test_container
from dgr.testimage import TESTS_TARGET, TestImage, needs_test_build
from dgr.workspace import Workspace
from pytest_dgr.builds import DependencyFailed, build_log, read_tail
from pytest_dgr.session import Settings, settings

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from dgr.images import BuildResult
    from dgr.options import BuildOptions


IMAGE_STATE = pytest.StashKey["ImageState"]()


S = TypeVar("S")
T = TypeVar("T")


class ImageUnavailable(Exception):
    """An item cannot run because its image did not build (one short line)."""


class BatsFailure(Exception):
    """A bats `@test` reported `not ok`."""

    def __init__(self, result: BatsResult, file: str) -> None:
        super().__init__(result.name)
        self.result = result
        self.file = file


class BatsMissing(Exception):
    """bats gave no result for a `@test` it was asked to run."""

    def __init__(self, run: BatsRun) -> None:
        super().__init__(run.file)
        self.run = run


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(text: str) -> str:
    """`text` without terminal colour codes (scripts' output is coloured)."""
    return _ANSI.sub("", text)


def format_error(exc: DgrError) -> str:
    """A DgrError as it renders itself, without terminal colours."""
    return plain(exc.render())


def fixture_value(state: S | None, fixture: str, where: str, get: Callable[[S], T]) -> T:
    """What a dgr fixture gives: `get(state)`, or a clean test failure (no traceback of
    dgr's internals) when the test is not in an image or pod folder, or the image or its
    container is unavailable."""
    if state is None:
        pytest.fail(f"{fixture} is only available to tests inside {where} (tests/test_*.py)", pytrace=False)
    try:
        return get(state)
    except ImageUnavailable as exc:
        reason = str(exc)
    except DgrError as exc:
        reason = format_error(exc)
    pytest.fail(reason, pytrace=False)


class Outcome(Generic[T]):
    """What is made once on first request: its value, or the exception that making it
    raised (raised again, the same object, on every later request: never retried)."""

    def __init__(self) -> None:
        self._made = False
        self._value: T | None = None
        self._error: Exception | None = None

    def get(self, make: Callable[[], T]) -> T:
        if not self._made:
            try:
                self._value = make()
            except Exception as exc:
                self._error = exc
            self._made = True
        if self._error is not None:
            raise self._error
        return cast(T, self._value)


class ImageState:
    """What the items of one image share on one worker: its build, container, bats runs."""

    fresh_containers = True  # dgr_fresh_container starts containers of this image

    def __init__(self, folder: Path, label: str, settings: Settings) -> None:
        self.folder = folder
        self.label = label
        self.settings = settings
        self._plan: Plan | None = None
        self._built: Built | None = None
        self._build: Outcome[BuildResult] = Outcome()
        self._test_image: Outcome[TestImage] = Outcome()
        self._container: TesterContainer | None = None
        self._container_error: DgrError | None = None
        self._bats: dict[str, BatsRun | DgrError] = {}

    @property
    def options(self) -> BuildOptions:
        return self.settings.options

    def plan(self) -> Plan:
        """The folder's plan, made once (DgrError when a manifest is broken or in a cycle)."""
        if self._plan is None:
            self._plan = make_plan(self.folder, self.options.config)
        return self._plan

    def build(self) -> BuildResult:
        """Build the image once (the same exception each time when it fails)."""
        return self._build.get(self._carry_out_image)

    def _carry_out_image(self) -> BuildResult:
        plan = self.plan()
        self._built = self.settings.builds.carry_out(plan)
        return self._built.results[plan.roots[0]]

    def image(self) -> BuildResult:
        """The built image, for items other than `build` (ImageUnavailable, one line)."""
        try:
            return self.build()
        except Exception:
            raise ImageUnavailable(f"build of {self.label} failed") from None

    def has_test_build(self) -> bool:
        """Whether the image's tests/ customise a test image (the `test-image` item)."""
        return needs_test_build(self.folder)

    def build_test_image(self) -> TestImage:
        """Build what the test containers run once: the test image (when tests/ customises
        one) and the tester's dependencies, over the built image."""
        return self._test_image.get(self._carry_out_tests)

    def _carry_out_tests(self) -> TestImage:
        self.image()
        plan, root = self.plan(), self.plan().roots[0]
        built = self.settings.builds.carry_out(
            plan, upto=image_keys_for_tests(plan, root), built=self._built
        )
        return assemble_test_image(plan, built, root)

    def test_image(self) -> TestImage:
        """What the test containers run, for the items that start them (ImageUnavailable)."""
        self.image()
        try:
            return self.build_test_image()
        except Exception:
            raise ImageUnavailable(f"build of the test image of {self.label} failed") from None

    def container(self) -> TesterContainer:
        """The started test container, ready (wait.sh succeeded); started once."""
        if self._container is not None:
            return self._container
        if self._container_error is not None:
            raise self._container_error
        test_image = self.test_image()
        try:
            container = start_test_container(test_image, self.options, self.settings.tester)
            try:
                container.wait_ready()
            except BaseException:
                container.stop()
                raise
        except DgrError as exc:
            self._container_error = exc
            raise
        self._container = container
        return container

    def fresh_container(
        self, override: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> TesterContainer:
        """A new test container of the image, ready, its attributes overridden by `override`
        (as TEMPLATER_OVERRIDE) and its environment extended by `env`; the caller stops it."""
        extra = {**self.settings.tester.extra_env, **(env or {})}
        if override is not None:
            extra["TEMPLATER_OVERRIDE"] = override_json(override)
        tester = replace(self.settings.tester, extra_env=extra)
        container = start_test_container(self.test_image(), self.options, tester)
        try:
            container.wait_ready()
        except BaseException:
            container.stop()
            raise
        return container

    def bats(self, file: str) -> BatsRun:
        """The run of one bats file (run once, on first request)."""
        cached = self._bats.get(file)
        if cached is None:
            container = self.container()
            try:
                cached = container.run_bats(file)
            except DgrError as exc:
                cached = exc
            self._bats[file] = cached
        if isinstance(cached, DgrError):
            raise cached
        return cached

    def rerun_bats(self, file: str, name: str) -> BatsRun:
        """A new run of one `@test` of a bats file (the test is rerun: pytest-rerunfailures).
        A container that never got ready is not started again: each rerun would wait for
        it as long again."""
        return self.container().run_bats(file, only=name)

    def close(self) -> None:
        """Stop the container (end of the image's items)."""
        if self._container is not None:
            self._container.stop()
            self._container = None


def override_json(override: Mapping[str, Any]) -> str:
    """`override` as the JSON of TEMPLATER_OVERRIDE (ContainerError if it is not a mapping
    of JSON values)."""
    if not isinstance(override, Mapping):
        raise ContainerError(f"override must be a mapping of attributes, not {type(override).__name__}")
    try:
        return json.dumps(override)
    except (TypeError, ValueError) as exc:
        raise ContainerError(f"override cannot be written as JSON: {exc}") from None


def image_state(node: pytest.Item | pytest.Collector) -> ImageState | None:
    """The state of the image folder `node` belongs to, if any."""
    directory = node.getparent(ImageDirectory)
    return directory.state if directory is not None else None


class ImageDirectory(pytest.Directory):
    """An image folder: `build`, `templates`, bats tests, then tests/test_*.py."""

    @property
    def state(self) -> ImageState:
        state = self.stash.get(IMAGE_STATE, None)
        if state is None:
            label = self.nodeid if self.nodeid not in ("", ".") else self.path.name
            state = ImageState(self.path, label, settings(self.config))
            self.stash[IMAGE_STATE] = state
        return state

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        yield BuildItem.from_parent(self, name="build")
        if self.state.has_test_build():
            yield TestImageItem.from_parent(self, name="test-image")
        yield TemplatesItem.from_parent(self, name="templates")
        for path in bats_files(self.path):
            yield BatsFile.from_parent(self, path=path)
        tests = self.path / "tests"
        if tests.is_dir():
            for path in sorted(tests.glob("test_*.py")):
                if path.is_file():
                    ihook = self.session.gethookproxy(path)
                    yield from ihook.pytest_collect_file(file_path=path, parent=self)

    def teardown(self) -> None:
        state = self.stash.get(IMAGE_STATE, None)
        if state is not None:
            state.close()


class DgrItem(pytest.Item):
    """Common failure reporting: our errors as short text, no traceback of dgr internals."""

    @property
    def state(self) -> ImageState:
        state = image_state(self)
        assert state is not None
        return state

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        exc = excinfo.value
        if isinstance(exc, ImageUnavailable):
            return str(exc)
        if isinstance(exc, DgrError):
            return format_error(exc)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.state.label}::{self.name}"


class BuildItem(DgrItem):
    """Builds the image (or finds it up to date); fails with the build's log."""

    def runtest(self) -> None:
        log_path = build_log(self.state.folder, self.state.options)
        self.report(self.with_log(log_path, self.state.build), log_path)

    def with_log(self, log_path: Path, build: Callable[[], T]) -> T:
        """`build()`; when it fails having written `log_path`, the log joins the report."""
        self.user_properties.append(("build_log", str(log_path)))
        started = time.time()
        try:
            return build()
        except DgrError as exc:
            if not isinstance(exc, DependencyFailed) and _written_since(log_path, started):
                self.add_report_section("call", "build log", plain(log_path.read_text(errors="replace")))
                if exc.details is None:
                    exc.details = read_tail(log_path)
                if exc.hint is None:
                    exc.hint = f"full log in {log_path}"
            raise

    def report(self, result: BuildResult, log_path: Path) -> None:
        how = "up to date" if result.up_to_date else "built"
        self.add_report_section("call", "dgr", f"{result.name} {how}; build log: {log_path}")


class TestImageItem(BuildItem):
    """Builds the test image of the image (its tests/ folder, on top of it) and the
    tester's dependencies, before the first test container starts; fails with its log."""

    __test__ = False  # not a pytest test class

    def runtest(self) -> None:
        state = self.state
        log_path = Workspace(state.image().workspace.target / TESTS_TARGET).log
        test_image = self.with_log(log_path, state.build_test_image)
        if test_image.tests is not None:
            self.report(test_image.tests, log_path)


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since - 1
    except OSError:
        return False


class TemplatesItem(DgrItem):
    """Renders the image's templates with the default attributes and each override."""

    def runtest(self) -> None:
        result = self.state.image()
        if self.state.options.keep:
            rendered = check_templates(result, make_dir(result.workspace.target, "templates-"))
        else:
            with temporary_dir(None, "dgr-templates-") as tmp:
                rendered = check_templates(result, tmp)
        self.add_report_section("call", "dgr", "templates rendered with: " + ", ".join(rendered))


class BatsFile(pytest.File):
    """A `tests/*.bats` file: one item per `@test`, named as written."""

    def collect(self) -> Iterator[BatsItem]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise self.CollectError(f"cannot read {self.path}: {exc.strerror}") from None
        for index, (line, name) in enumerate(bats_tests(text)):
            yield BatsItem.from_parent(self, name=name, index=index, line=line)


class BatsItem(DgrItem):
    """One bats `@test`: its TAP result from the file's run in the test container."""

    def __init__(self, *, index: int, line: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index
        self.line = line
        self.runs = 0

    def runtest(self) -> None:
        # The file runs once for all its tests; a rerun (pytest-rerunfailures) runs this
        # @test alone, again.
        self.runs += 1
        if self.runs == 1:
            run = self.state.bats(self.path.name)
            result = run.result_for(self.index, self.name)
        else:
            run = self.state.rerun_bats(self.path.name, self.name)
            result = run.result_for(0, self.name)
        if result is None:
            raise BatsMissing(run)
        if result.skipped:
            # reported at the @test's line, not at this line of the plugin
            raise pytest.skip.Exception(result.reason or "skipped by bats", _use_item_location=True)
        if result.failed:
            raise BatsFailure(result, self.path.name)

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        exc = excinfo.value
        if isinstance(exc, BatsFailure):
            text = f"bats: not ok {exc.result.number} {exc.result.name} ({exc.file})"
            return text + ("\n" + exc.result.diagnostics if exc.result.diagnostics else "")
        if isinstance(exc, BatsMissing):
            tail = "\n".join(exc.run.output.rstrip("\n").splitlines()[-30:])
            return f"bats gave no result for this test (exit code {exc.run.returncode}); output:\n{tail}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.line - 1, f"{self.path.name}: @test {self.name}"
