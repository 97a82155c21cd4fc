"""A built pod started for its tests: the pod's tester container owns the network namespace
(bats and the pod's wait.sh run there), each app's test container joins it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

from dgr.build import internals_layer
from dgr.container import Container, ContainerSpec, Volume
from dgr.errors import ContainerError
from dgr.internals_binaries import BUSYBOX
from dgr.leftovers import make_dir
from dgr.log import level_name, log
from dgr.options import BuildOptions
from dgr.podbuild import PodBuild
from dgr.podrun import netns_of
from dgr.tester import KEEPER, RUN_PREFIX, TesterContainer, TesterOptions, start_test_container
from dgr.testimage import STATUS_IN_IMAGE, TestImage, bats_layer, files_layer, make_status_dir


class TestPod:
    """A pod started for its tests: the pod's tester container (which owns the network
    namespace and holds `<pod>/tests`, bats and busybox) and each app's test container."""

    __test__ = False  # not a pytest test class

    def __init__(self, tester: TesterContainer, apps: dict[str, TesterContainer]) -> None:
        self.tester = tester
        self.apps = apps

    def __getitem__(self, name: str) -> TesterContainer:
        try:
            return self.apps[name]
        except KeyError:
            known = ", ".join(self.apps)
            raise ContainerError(f"no app named {name!r} in this pod (apps: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.apps)

    def stop(self) -> None:
        for container in self.apps.values():
            container.stop()
        self.tester.stop()

    def __enter__(self) -> TestPod:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_test_pod(built: PodBuild, options: BuildOptions, tester: TesterOptions | None = None) -> TestPod:
    """Start the pod for its tests: the tester first (it owns the network namespace), then
    each app's test container (prestart done, app started, its own wait.sh polled), then the
    pod's `tests/wait.sh` is polled from the tester."""

    tester = tester or TesterOptions(keep=options.keep)
    pod = built.pod
    base = built.target / "tests"
    base.mkdir(parents=True, exist_ok=True)
    run_dir = make_dir(base, RUN_PREFIX)
    internals = internals_layer(options.config.cache_path)
    try:
        files = files_layer(pod.project / "tests", run_dir / "layer", (internals,))
        status = make_status_dir(run_dir)
        env = {"TESTER": "TRUE", "LOG_LEVEL": level_name(options.log_level), **tester.extra_env}
        spec = ContainerSpec(
            name=pod.ac_name,
            layers=(internals, bats_layer(options.config.cache_path), files),
            exec=(BUSYBOX, "sh", "-c", KEEPER, "keeper", BUSYBOX, "true"),
            env=env,
            volumes=(Volume(status, STATUS_IN_IMAGE),),
            prestart=False,
        )
        container = Container(spec, state_dir=run_dir / "container", keep=tester.keep)
        ports = [p for app in built.apps for p in app.runtime_app.ports]
        holder = TesterContainer(container, run_dir, pod.project, tester, ports)
        container.start()
    except BaseException:
        if not tester.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    running = TestPod(holder, {})
    try:
        holder.wait_started()
        netns = netns_of(container)
        for app in built.apps:
            log.info("Starting app %s of pod %s", app.name, pod.name)
            running.apps[app.name] = start_test_container(
                TestImage.of(app.result), options, tester, name=app.name, netns=netns
            )
        for app_container in running.apps.values():
            app_container.wait_ready()
        holder.wait_ready()
    except BaseException:
        running.stop()
        raise
    return running
