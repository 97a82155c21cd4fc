"""Python tests of the nginx image: from the host through its port, and a fresh container
with other attributes."""

import pytest
import requests


def test_version_is_the_debian_package_version(dgr_image, dgr_container):
    installed = dgr_container.exec(["dpkg-query", "-W", "-f", "${Version}", "nginx"]).output.strip()
    assert dgr_image.name.version == installed
    assert "+" in installed or "-" in installed  # a Debian revision: 1.22.1-9+deb12u3


def test_the_host_reaches_nginx(dgr_container):
    host, port = dgr_container.address("http")
    page = requests.get(f"http://{host}:{port}/", timeout=10)
    assert page.status_code == 200 and "<h1>Hello world</h1>" in page.text
    assert requests.get(f"http://{host}:{port}/health", timeout=10).text == "ok\n"


def test_an_override_changes_the_page_and_the_workers(dgr_fresh_container):
    container = dgr_fresh_container(override={"web": {"who": "you", "workers": 1}})
    result = container.exec(["/dgr/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:80/"])
    assert result.returncode == 0 and "<h1>Hello you</h1>" in result.output
    assert "worker_processes 1;" in container.read_file("/etc/nginx/nginx.conf")


def test_a_bad_attribute_fails_the_check_command(dgr_fresh_container):
    # a start that fails fails the test with prestart's message: expect it
    with pytest.raises(pytest.fail.Exception, match='checkCmd .*"worker_processes" directive invalid'):
        dgr_fresh_container(override={"web": {"workers": "many"}})
