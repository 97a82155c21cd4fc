"""Readiness checks declared in the manifest (`tester.readiness`), on real containers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
import yaml

from dgr.options import BuildOptions
from dgr.plan import plan_build_pod, plan_build_test_image
from dgr.podtest import start_test_pod
from dgr.tester import TesterOptions, WaitError, run_image_tests, start_test_container
from tests.integration.test_plugin import run, write
from tests.integration.test_tester import outcomes, project

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

BB = "/dgr/bin/busybox"
# The app is ready after 0.5 s: it says so, creates /tmp/ready and serves /srv on 8080.
SLOW_APP = f'{BB} sleep 0.5; echo "server is up"; {BB} touch /tmp/ready; exec {BB} httpd -f -p 8080 -h /srv'
READY_BATS = (
    '@test "the app is ready" {\n  [ -f /tmp/ready ]\n  wget -q -O /dev/null http://127.0.0.1:8080/\n}\n'
)


def slow_web(root: Path, readiness: str, extra: dict[str, str] | None = None) -> Path:
    manifest = (
        "name: example.com/aci-slow:1\n"
        f"aci:\n  app:\n    exec: [{BB}, sh, -c, '{SLOW_APP}']\n"
        "    ports: [{name: http, port: 8080}]\n"
        f"tester:\n  readiness:\n{readiness}"
    )
    files = {"aci-manifest.yml": manifest, "files/srv/index.html": "up\n", "tests/r.bats": READY_BATS}
    return project(root / "aci-slow", {**files, **(extra or {})})


@pytest.mark.parametrize(
    "readiness",
    [
        "    tcp: http\n",
        "    http: http://127.0.0.1:8080/index.html\n    status: 200\n",
        "    log: '^server is up$'\n",
        f"    command: {BB} test -f /tmp/ready\n",
    ],
    ids=["tcp", "http", "log", "command"],
)
def test_the_tests_wait_for_the_check(options: BuildOptions, tmp_path: Path, readiness: str) -> None:
    image = plan_build_test_image(slow_web(tmp_path, readiness + "    interval: 0.1\n"), options)
    started = time.monotonic()
    runs = run_image_tests(image, options)
    assert outcomes(runs) == [("the app is ready", "ok")], runs[0].output
    assert time.monotonic() - started < 5  # polled often, not once a second


def test_wait_sh_runs_after_the_check(options: BuildOptions, tmp_path: Path) -> None:
    wait = {"tests/wait.sh": f"#!/bin/sh\n[ -f /tmp/ready ] && {BB} touch /tmp/waited\n"}
    bats = {"tests/r.bats": '@test "both ran" {\n  [ -f /tmp/waited ]\n}\n'}
    image = plan_build_test_image(slow_web(tmp_path, "    tcp: 8080\n", {**wait, **bats}), options)
    runs = run_image_tests(image, options, TesterOptions(wait_tries=1))
    assert outcomes(runs) == [("both ran", "ok")], runs[0].output


def test_a_never_ready_container_names_the_check_and_its_last_output(
    options: BuildOptions, tmp_path: Path
) -> None:
    image = plan_build_test_image(
        slow_web(tmp_path, "    http: http://127.0.0.1:8080/missing\n    timeout: 1.5\n"), options
    )
    started = time.monotonic()
    with start_test_container(image, options) as container, pytest.raises(WaitError) as failure:
        container.wait_ready()
    assert time.monotonic() - started < 10
    error = failure.value
    assert error.message.startswith(
        "container aci-slow never got ready: http check of http://127.0.0.1:8080/missing (status 200) "
        "did not succeed within 1.5s"
    )
    assert error.key == "tester.readiness" and error.path == str(image.image.manifest.path)
    assert "404 Not Found" in (error.details or "")


def test_plugin_fails_the_items_with_one_message(pytester: pytest.Pytester, dgr_home: Path) -> None:
    write(
        pytester.path / "aci-never",
        {
            "aci-manifest.yml": (
                "name: example.com/aci-never:1\n"
                "tester:\n  readiness:\n    command: echo still booting; exit 1\n    timeout: 0.5\n"
            ),
            "tests/x.bats": '@test "a" {\n  true\n}\n@test "b" {\n  true\n}\n',
            "tests/test_py.py": "def test_py(dgr_container):\n    pass\n",
        },
    )
    result = run(pytester, dgr_home)
    result.assert_outcomes(passed=2, failed=2, errors=1)  # the Python test: in its fixture
    out = result.stdout.str()
    assert out.count("never got ready: command check 'echo still booting; exit 1' did not succeed") == 3
    assert out.count("still booting") >= 3 and "Traceback" not in out


POD_FILES = {
    "aci-web/aci-manifest.yml": (
        "name: example.com/aci-web:1\n"
        f"aci:\n  app:\n    exec: [{BB}, sh, -c, '{SLOW_APP}']\n"
        "    ports: [{name: http, port: 8080}]\n"
        "tester:\n  readiness:\n    http: http://127.0.0.1:8080/\n    interval: 0.1\n"
    ),
    "aci-web/files/srv/index.html": "up\n",
    "pod-ready/pod-manifest.yml": (
        "name: example.com/pod-ready:1\n"
        "pod:\n  apps:\n    - name: web\n      dependencies: [example.com/aci-web:1]\n"
    ),
}


def test_pods_wait_for_their_apps_and_export_the_probe(options: BuildOptions, tmp_path: Path) -> None:
    for rel, text in POD_FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    built = plan_build_pod(tmp_path / "pod-ready", options)
    (container,) = yaml.safe_load(built.kube_yaml.read_text())["spec"]["containers"]
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/", "port": 8080},
        "periodSeconds": 1,
        "timeoutSeconds": 10,
        "failureThreshold": 3,
    }
    with start_test_pod(built, options) as pod:
        # started means ready: the app's check was waited for
        assert pod["web"].exec([BB, "test", "-f", "/tmp/ready"]).returncode == 0
        host, port = pod["web"].address("http")
        assert requests.get(f"http://{host}:{port}/", timeout=10).text == "up\n"
