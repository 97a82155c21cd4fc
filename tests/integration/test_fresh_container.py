"""`dgr_fresh_container` and `dgr_container.address()` in the Python tests of an image folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_plugin import run, write

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

MANIFEST = """name: example.com/aci-greet:1
aci:
  app:
    exec: [/dgr/bin/busybox, httpd, -f, -p, '8080', -h, /srv]
    ports: [{name: http, port: 8080}]
tester:
  readiness:
    tcp: http
    interval: 0.05
"""

# `nested.y` is used only when an override gives `nested`: a way to break prestart
TEMPLATE = "Hello {{ who }}\n{% if nested is defined %}{{ nested.y }}{% endif %}"

TESTS = """
from pathlib import Path

import requests

GREETING = "/srv/index.html"
seen = {}


def test_shared_container_over_http(dgr_container):
    host, port = dgr_container.address("http")
    assert requests.get(f"http://{host}:{port}/", timeout=10).text == "Hello world\\n"


def test_fresh_container_with_an_override(dgr_fresh_container, dgr_container):
    fresh = dgr_fresh_container(override={"who": "you"})
    assert fresh.read_file(GREETING) == "Hello you\\n"
    host, port = fresh.address("http")
    assert requests.get(f"http://{host}:{port}/", timeout=10).text == "Hello you\\n"
    assert fresh.run_dir != dgr_container.run_dir
    assert dgr_container.read_file(GREETING) == "Hello world\\n"
    other = dgr_fresh_container(env={"EXTRA": "1"})
    assert other.read_file(GREETING) == "Hello world\\n"
    assert other.exec(["/dgr/bin/busybox", "sh", "-c", "echo $EXTRA"]).output == "1\\n"
    seen["run_dirs"] = [fresh.run_dir, other.run_dir]


def test_fresh_containers_are_removed_after_their_test():
    assert seen["run_dirs"] and not any(Path(d).exists() for d in seen["run_dirs"])


def test_an_override_that_breaks_prestart(dgr_fresh_container):
    dgr_fresh_container(override={"who": None, "nested": {"x": 1}}).exec(["true"])


def test_an_override_that_is_not_a_mapping(dgr_fresh_container):
    dgr_fresh_container(override=["who"])


def test_an_undeclared_port(dgr_container):
    dgr_container.address(9999)
"""


def test_fresh_containers_and_host_addresses(pytester: pytest.Pytester, dgr_home: Path) -> None:
    write(
        pytester.path / "aci-greet",
        {
            "aci-manifest.yml": MANIFEST,
            "attributes/a.yml": "default:\n  who: world\n",
            "templates/srv/index.html.tmpl": TEMPLATE,
            "tests/test_greet.py": TESTS,
        },
    )
    write(
        pytester.path / "elsewhere",
        {"test_outside.py": "def test_outside(dgr_fresh_container):\n    pass\n"},
    )
    result = run(pytester, dgr_home, "-rA", "-p", "no:xdist")
    out = result.stdout.str()
    for passed in (
        "shared_container_over_http",
        "fresh_container_with_an_override",
        "fresh_containers_are_removed_after_their_test",
    ):
        assert f"PASSED aci-greet/tests/test_greet.py::test_{passed}" in out, out
    # bad input: one clear message each, no traceback of dgr's internals
    result.stdout.fnmatch_lines(
        [
            "*test_an_override_that_breaks_prestart*",
            "*container aci-greet stopped during start (prestart failed?)*",
            "*nested.y*",
        ]
    )
    assert "override must be a mapping of attributes, not list" in out
    assert "port 9999 is not declared in the manifest of aci-greet (ports: http=8080)" in out
    assert "dgr_fresh_container is only available to tests inside an image folder" in out
    assert "Traceback" not in out and "dgr/tester.py" not in out
    result.assert_outcomes(passed=5, failed=3, errors=1)
