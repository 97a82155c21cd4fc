"""`address(port)` of test containers: the container's TCP ports reached from the test process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from dgr.errors import ContainerError
from dgr.options import BuildOptions
from dgr.plan import plan_build_test_image
from dgr.tester import TesterOptions, start_test_container
from tests.integration.test_tester import project

pytestmark = pytest.mark.integration

WEB_MANIFEST = """name: example.com/aci-web:1
aci:
  app:
    exec: [/dgr/bin/busybox, httpd, -f, -p, '8080', -h, /srv]
    ports:
      - {name: http, port: 8080}
      - {name: dns, port: 53, protocol: udp}
"""
WEB_WAIT = "#!/bin/sh\n/dgr/bin/busybox wget -q -O /dev/null http://127.0.0.1:8080/\n"


def web_project(root: Path) -> Path:
    return project(
        root / "aci-web",
        {"aci-manifest.yml": WEB_MANIFEST, "files/srv/index.html": "hello from the container\n",
         "tests/wait.sh": WEB_WAIT},
    )  # fmt: skip


def test_address_reaches_the_app_from_the_test_process(options: BuildOptions, tmp_path: Path) -> None:
    image = plan_build_test_image(web_project(tmp_path), options)
    tester = TesterOptions(wait_tries=100, wait_interval=0.05)
    with start_test_container(image, options, tester) as container:
        container.wait_ready()
        host, port = container.address("http")
        assert host == "127.0.0.1" and port not in (0, 8080)
        assert container.address(8080) == (host, port)  # the same listener, by number
        page = requests.get(f"http://{host}:{port}/", timeout=10)
        assert (page.status_code, page.text) == (200, "hello from the container\n")
    # released with the container
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect((host, port))


def test_address_of_an_undeclared_or_udp_port_is_an_error(options: BuildOptions, tmp_path: Path) -> None:
    image = plan_build_test_image(web_project(tmp_path), options)
    with start_test_container(image, options, TesterOptions(wait_tries=1)) as container:
        with pytest.raises(
            ContainerError, match=r"port 9090 is not declared .*\(ports: http=8080, dns=53\)"
        ):
            container.address(9090)
        with pytest.raises(ContainerError, match="only TCP"):
            container.address("dns")
