"""The collector and items of one pod folder (SPEC §8, §10).

A folder holding `pod-manifest.yml` becomes a :class:`PodDirectory`, whose items run in this
order: `build` (every app, the pod manifest, the Kubernetes export), `templates[<app>]` for
each app (its templates rendered with its attributes, pod attributes included), one item per
bats `@test` of `<pod>/tests/*.bats`, then `<pod>/tests/test_*.py`.

The bats tests and wait.sh run in the pod's *tester* container, which owns the pod's network
namespace: every app is reachable on 127.0.0.1 from them. Python tests get `dgr_pod` (a
:class:`dgr.podtest.TestPod`: `dgr_pod["web"]` is the web app's container) and `dgr_container`
(the tester). The pod is started once, on the first item that needs it, and stopped after
the folder's last item. Everything else (failure reports, bats parsing, scheduling a
folder on one xdist worker) is the image folder's (items.py), which these classes extend.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from dgr.errors import DgrError
from dgr.leftovers import temporary_dir
from dgr.plan import app_dependencies
from dgr.pod import build_pod
from dgr.podmanifest import load_pod_manifest
from dgr.podtest import start_test_pod
from dgr.templatecheck import check_templates
from pytest_dgr.items import (
    IMAGE_STATE,
    BatsFile,
    DgrItem,
    ImageDirectory,
    ImageState,
    ImageUnavailable,
    fixture_value,
    image_state,
)
from pytest_dgr.session import Settings, settings

if TYPE_CHECKING:
    from dgr.images import BuildResult
    from dgr.pod import PodBuild
    from dgr.podtest import TestPod
    from dgr.tester import TesterContainer


class PodState(ImageState):
    """What the items of one pod share on one worker: its build and the started pod."""

    def __init__(self, folder: Path, label: str, settings: Settings) -> None:
        super().__init__(folder, label, settings)
        self._pod: PodBuild | None = None
        self._pod_error: Exception | None = None
        self._running: TestPod | None = None
        self._running_error: DgrError | None = None

    def pod(self) -> PodBuild:
        """Build the pod once: the images its apps need, in the order of its plan, through
        the session's builds (each built once, failures remembered), then the apps
        (DgrError when it fails)."""
        if self._pod is not None:
            return self._pod
        if self._pod_error is not None:
            raise self._pod_error

        try:
            plan = self.plan()
            assert plan.pod is not None
            built = self.settings.builds.carry_out(plan)
            self._pod = build_pod(
                self.folder, self.options, pod=plan.pod, resolved=app_dependencies(plan, built)
            )
        except Exception as exc:  # not retried by the pod's other items
            self._pod_error = exc
            raise
        return self._pod

    fresh_containers = False

    def has_test_build(self) -> bool:
        return False  # a pod's tests/ is the pod tester's: no image is built from it

    def built_pod(self) -> PodBuild:
        """The built pod, for items other than `build` (ImageUnavailable, one line)."""
        try:
            return self.pod()
        except Exception:
            raise ImageUnavailable(f"build of {self.label} failed") from None

    def build(self) -> BuildResult:
        """The first app's image (what `dgr_image` gives in a pod folder)."""
        return self.pod().apps[0].result

    def running(self) -> TestPod:
        """The pod started for its tests (every app up, wait.sh succeeded); started once."""
        if self._running is not None:
            return self._running
        if self._running_error is not None:
            raise self._running_error

        built = self.built_pod()
        try:
            self._running = start_test_pod(built, self.options, self.settings.tester)
        except DgrError as exc:
            self._running_error = exc
            raise
        return self._running

    def container(self) -> TesterContainer:
        """The pod's tester container (bats and wait.sh run there)."""
        return self.running().tester

    def close(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None


class PodDirectory(ImageDirectory):
    """A pod folder: `build`, `templates[<app>]`, bats tests, then tests/test_*.py."""

    @property
    def state(self) -> PodState:
        state = self.stash.get(IMAGE_STATE, None)
        if not isinstance(state, PodState):
            label = self.nodeid if self.nodeid not in ("", ".") else self.path.name
            state = PodState(self.path, label, settings(self.config))
            self.stash[IMAGE_STATE] = state
        return state

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:

        yield PodBuildItem.from_parent(self, name="build")
        try:
            apps = [app.name for app in load_pod_manifest(self.path).apps]
        except DgrError:
            apps = []  # the build item reports it
        for app in apps:
            yield PodTemplatesItem.from_parent(self, name=f"templates[{app}]", app=app)
        tests = self.path / "tests"
        for path in sorted(tests.glob("*.bats")) if tests.is_dir() else []:
            yield BatsFile.from_parent(self, path=path)
        for path in sorted(tests.glob("test_*.py")) if tests.is_dir() else []:
            if path.is_file():
                ihook = self.session.gethookproxy(path)
                yield from ihook.pytest_collect_file(file_path=path, parent=self)


def pod_state(node: pytest.Item | pytest.Collector) -> PodState | None:
    """The state of the pod folder `node` belongs to, if any."""
    state = image_state(node)
    return state if isinstance(state, PodState) else None


class PodItem(DgrItem):
    @property
    def pod_state(self) -> PodState:
        state = pod_state(self)
        assert state is not None
        return state


class PodBuildItem(PodItem):
    """Builds every app of the pod (or finds them up to date)."""

    def runtest(self) -> None:
        built = self.pod_state.pod()
        for app in built.apps:
            self.user_properties.append((f"build_log[{app.name}]", str(app.result.workspace.log)))
        how = "up to date" if built.up_to_date else "built"
        images = ", ".join(str(app.result.name) for app in built.apps)
        self.add_report_section("call", "dgr", f"{built.pod.name} {how}: {images}; {built.manifest_json}")


class PodTemplatesItem(PodItem):
    """Renders one app's templates with its default attributes and each override."""

    def __init__(self, *, app: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.app = app

    def runtest(self) -> None:

        result = self.pod_state.built_pod().app(self.app).result
        with temporary_dir(None, "dgr-templates-") as tmp:
            rendered = check_templates(result, tmp)
        variants = ", ".join(rendered)
        self.add_report_section("call", "dgr", f"{self.app}: templates rendered with: {variants}")


def dgr_pod_fixture(request: pytest.FixtureRequest) -> TestPod:
    """The body of the `dgr_pod` fixture (declared in plugin.py)."""

    return fixture_value(pod_state(request.node), "dgr_pod", "a pod folder", lambda s: s.running())
