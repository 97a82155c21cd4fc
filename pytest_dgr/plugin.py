"""pytest plugin: every folder holding aci-manifest.yml becomes a collector of test items.

Registered through the `pytest11` entry point. See `options.py` for the session's build
options (given by `dgr test`, or from --dgr-*), `session.py` for what the session shares,
`items.py` for what an image folder collects, `builds.py` for "each image built once per
session", `scheduling.py` for xdist. Loading the plugin imports the library; a session that
collects no image folder builds, starts and writes nothing.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from dgr import userns
from dgr.errors import DgrError
from dgr.leftovers import owned, remove_stale
from dgr.manifest import ACI_MANIFEST
from dgr.project import ImageProject, PodProject, project_kind
from dgr.structure import ImageView
from pytest_dgr.items import ImageDirectory, fixture_value, format_error, image_state
from pytest_dgr.options import (
    add_options,
    keeps_files,
    receive_from_controller,
    send_to_worker,
)
from pytest_dgr.pod_items import PodDirectory, dgr_pod_fixture
from pytest_dgr.scheduling import ImageScheduling, dist_given
from pytest_dgr.session import SESSION_DIR, settings

# --dgr-push (pushing the images that passed, at the end) and the JUnit record of reruns
# are plugin modules of their own.
pytest_plugins = ["pytest_dgr.push", "pytest_dgr.reruns"]

SESSION_PREFIX = "dgr-session-"
OWNS_SESSION_DIR = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """An ordinary user's session runs again in dgr's user namespace (docs/security.md), where
    sandboxes can be made; without a subordinate id range it goes on as is (dgr items then
    fail with the error saying how to get one)."""
    if getattr(config, "workerinput", None) is not None or not userns.needs_rootless_namespace():
        return None
    try:
        return userns.rerun_in_rootless_namespace()
    except DgrError as exc:
        config.issue_config_time_warning(pytest.PytestWarning(f"dgr: {exc}"), stacklevel=2)
        return None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dgr: an item of a dgr image folder")
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        receive_from_controller(config, workerinput)
    if workerinput is not None and "dgr_session_dir" in workerinput:
        config.stash[SESSION_DIR] = Path(workerinput["dgr_session_dir"])
        config.stash[OWNS_SESSION_DIR] = False
    else:
        # Created on first use; shared with xdist workers through their workerinput. Named for
        # this process: what a killed session left goes now (dgr/leftovers.py).

        remove_stale(Path(tempfile.gettempdir()), SESSION_PREFIX)
        config.stash[SESSION_DIR] = (
            Path(tempfile.gettempdir()) / f"{owned(SESSION_PREFIX)}{uuid.uuid4().hex[:12]}"
        )
        config.stash[OWNS_SESSION_DIR] = True
    if workerinput is None and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistController(config), "dgr-xdist-controller")


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(OWNS_SESSION_DIR, False) and not keeps_files(config):
        shutil.rmtree(config.stash[SESSION_DIR], ignore_errors=True)


# The collector of each kind of project (dgr/project.py).
COLLECTORS: dict[type[ImageProject] | type[PodProject], type[ImageDirectory]] = {
    ImageProject: ImageDirectory,
    PodProject: PodDirectory,
}


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    kind = project_kind(path)
    if kind is None:
        return None
    settings(parent.config)
    return COLLECTORS[kind].from_parent(parent, path=path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.getparent(ImageDirectory) is not None:
            item.add_marker(pytest.mark.dgr)


def pytest_report_header(config: pytest.Config) -> list[str]:
    paths = [p for p in (Path(a.split("::")[0]) for a in config.args) if p.is_dir()]
    if not any((p / ACI_MANIFEST).is_file() or any(p.glob(f"*/{ACI_MANIFEST}")) for p in paths):
        return []
    return ["dgr: each image's build log is <image>/target/build.log (follow it with tail -f)"]


@pytest.fixture
def dgr_image(request: pytest.FixtureRequest) -> Any:
    """The image of this test's folder, built: a dgr.structure.ImageView, which has the
    attributes of its dgr.images.BuildResult and structure checks (`config`, `path()`,
    `exists()`, `read_file()`, `run()`, `output()`); a check that cannot be made fails the test."""

    result = fixture_value(image_state(request.node), "dgr_image", "an image folder", lambda s: s.image())
    return ImageView(result, fail=lambda error: pytest.fail(format_error(error), pytrace=False))


@pytest.fixture
def dgr_container(request: pytest.FixtureRequest) -> Any:
    """The image's started test container (a dgr.tester.TesterContainer), shared by the
    image's tests: prestart done, app started, wait.sh succeeded. Stopped after the image's
    last item."""

    state = image_state(request.node)
    return fixture_value(state, "dgr_container", "an image folder", lambda s: s.container())


@pytest.fixture
def dgr_fresh_container(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Start new test containers of this test's image, for this test only:
    `dgr_fresh_container(override={...}, env={...})` returns a ready container (a
    dgr.tester.TesterContainer, as `dgr_container`) whose attributes are overridden by
    `override`; each is stopped and removed after the test."""

    state = image_state(request.node)
    if state is not None and not state.fresh_containers:
        state = None  # a pod's apps start together: no fresh container of one of them
    fixture_value(state, "dgr_fresh_container", "an image folder", lambda s: s)  # fails outside one
    started: list[Any] = []

    def start(*, override: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Any:
        container = fixture_value(
            state, "dgr_fresh_container", "an image folder", lambda s: s.fresh_container(override, env)
        )
        started.append(container)
        return container

    yield start
    for container in started:
        container.stop()


@pytest.fixture
def dgr_pod(request: pytest.FixtureRequest) -> Any:
    """The pod of this test's folder, started (a dgr.podtest.TestPod): `dgr_pod["web"]` is the
    web app's container; all apps share one network namespace. Stopped after the pod's
    last item."""

    return dgr_pod_fixture(request)


class XdistController:
    """Controller-side xdist hooks (registered only when xdist is active)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["dgr_session_dir"] = str(self.config.stash[SESSION_DIR])
        send_to_worker(self.config, node.workerinput)

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:

        if config.getvalue("dist") == "load" and not dist_given(config):
            return ImageScheduling(config, log)
        return None
