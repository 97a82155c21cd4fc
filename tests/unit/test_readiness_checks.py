"""`tester.readiness`: parsing, the OCI Healthcheck and the Kubernetes readinessProbe."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgr.errors import ManifestError
from dgr.manifest import Manifest
from dgr.manifest_reader import parse_manifest
from dgr.ociconfig import image_config
from dgr.readiness import ANNOTATION, BUSYBOX, Readiness, kube_probe, oci_healthcheck

HEAD = """name: example.com/aci-web:1
aci:
  app:
    ports: [{name: http, port: 8080}]
tester:
  readiness:
"""


def manifest(readiness: str) -> Manifest:
    return parse_manifest(HEAD + readiness, Path("/project/aci-manifest.yml"))


def check(readiness: str) -> Readiness:
    found = manifest(readiness).tester.readiness
    assert found is not None
    return found


def test_tcp_by_port_name_or_number_with_timeout_and_interval() -> None:
    assert check("    tcp: http\n    timeout: 30\n    interval: 0.5\n") == Readiness(
        kind="tcp", port=8080, timeout=30.0, interval=0.5
    )
    assert check("    tcp: 9000\n") == Readiness(kind="tcp", port=9000, timeout=60.0, interval=1.0)


def test_http_log_and_command_checks() -> None:
    http = check("    http: http://127.0.0.1:8080/health?full=1\n    status: 204\n")
    assert (http.kind, http.url, http.status) == ("http", "http://127.0.0.1:8080/health?full=1", 204)
    assert check("    http: http://localhost/\n").status == 200
    assert check("    log: 'listening on \\d+'\n").pattern == "listening on \\d+"
    assert check("    command: [/bin/ready, --now]\n").argv() == ["/bin/ready", "--now"]
    assert check("    command: test -f /tmp/ready && echo yes\n").argv() == [
        BUSYBOX, "sh", "-c", "test -f /tmp/ready && echo yes",
    ]  # fmt: skip


def test_the_image_carries_the_check_as_an_annotation() -> None:
    m = manifest("    tcp: http\n")
    (annotation,) = [a for a in m.aci.annotations if a.name == ANNOTATION]
    assert Readiness.from_json(annotation.value) == m.tester.readiness
    # an app of a pod: its manifest is generated, only the annotation is left
    from dataclasses import replace

    from dgr.manifest import Tester

    assert replace(m, tester=Tester()).readiness() == m.tester.readiness


@pytest.mark.parametrize(
    ("readiness", "message", "key"),
    [
        (
            "    grpc: 9000\n",
            "unknown readiness check kind 'grpc' in tester.readiness (kinds: tcp, ",
            "grpc",
        ),
        ("    timeout: 3\n", "needs exactly one check of kind tcp, http, log, command; found none", ""),
        ("    tcp: 1\n    log: x\n", "found several (tcp, log)", ""),
        ("    tcp: https\n", "no port named 'https' in aci.app.ports (known: http)", "tcp"),
        ("    tcp: 70000\n", "port in 1-65535", "tcp"),
        ("    http: https://127.0.0.1/\n", "must be an http:// URL", "http"),
        ("    http: http://127.0.0.1/\n    status: 1000\n", "HTTP status", "status"),
        ("    tcp: 80\n    status: 200\n", "status is for http checks only", "status"),
        ("    log: '(unclosed'\n", "not a valid regular expression", "log"),
        ("    command: []\n", "command line or a non-empty list", "command"),
        ("    tcp: 80\n    interval: 0\n", "positive number of seconds", "interval"),
        ("    tcp: 80\n    timeout: soon\n", "positive number of seconds", "timeout"),
    ],
)
def test_bad_checks_name_the_key_and_line(readiness: str, message: str, key: str) -> None:
    with pytest.raises(ManifestError) as failure:
        manifest(readiness)
    assert message in failure.value.message
    assert failure.value.key == ("tester.readiness" + (f".{key}" if key else ""))
    assert failure.value.line is not None and failure.value.line >= 6


def test_oci_healthcheck() -> None:
    config = image_config(
        manifest("    tcp: http\n    interval: 2\n    timeout: 30\n"),
        version="1",
        diff_ids=["sha256:" + "1" * 64],
        created="2026-12-01T00:00:00Z",
    )["config"]
    assert config["Healthcheck"] == {
        "Test": ["CMD", BUSYBOX, "nc", "-w", "2", "127.0.0.1", "8080", "-e", BUSYBOX, "true"],
        "Interval": 2_000_000_000,
        "Timeout": 10_000_000_000,
        "StartPeriod": 30_000_000_000,
        "Retries": 3,
    }
    assert oci_healthcheck(check("    log: started\n")) is None  # engines cannot read the log
    assert oci_healthcheck(None) is None


def test_kubernetes_probe() -> None:
    timing = {"periodSeconds": 1, "timeoutSeconds": 5, "failureThreshold": 3}
    assert kube_probe(check("    tcp: http\n    interval: 0.2\n    timeout: 5\n")) == {
        "tcpSocket": {"port": 8080}, **timing,
    }  # fmt: skip
    assert kube_probe(check("    http: http://127.0.0.1:8080/health?x=1\n    timeout: 5\n")) == {
        "httpGet": {"path": "/health?x=1", "port": 8080}, **timing,
    }  # fmt: skip
    # a status the kubelet's probe would not take as ready: the same command as the tests run
    not_found = check("    http: http://127.0.0.1/gone\n    status: 404\n    timeout: 5\n")
    assert kube_probe(not_found) == {"exec": {"command": not_found.argv()}, **timing}
    command = check("    command: [/bin/ready]\n    interval: 2.5\n")
    assert kube_probe(command) == {
        "exec": {"command": ["/bin/ready"]}, "periodSeconds": 3, "timeoutSeconds": 10, "failureThreshold": 3,
    }  # fmt: skip
    assert kube_probe(check("    log: started\n")) is None
