"""Readiness checks (`tester.readiness` in aci-manifest.yml): when a started container is ready.

One check per image, of one kind: a TCP port accepts connections (`tcp`), an HTTP URL answers
with a status (`http`), a line appears in the container's output (`log`), or a command exits
0 (`command`); retried until it succeeds or `timeout` seconds have passed, at most `interval`
seconds apart. The tests wait for it (dgr/tester.py); the same check becomes the OCI image
config's `Healthcheck` (dgr/ociconfig.py) and the Kubernetes export's `readinessProbe` (dgr/kube.py).
A `log` check exists only for the tests: engines cannot probe a container's output.

The tcp, http and command checks are commands run inside the container with dgr's busybox,
so the tests, the engines and Kubernetes' exec probes run the very same thing. The check
travels with the image as the annotation `dgr-readiness` (JSON), so that the apps of a pod,
whose manifests are generated from their images', keep it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

BUSYBOX = "/dgr/bin/busybox"
KINDS = ("tcp", "http", "log", "command")
ANNOTATION = "dgr-readiness"
CHECK_TIME_LIMIT = 10.0  # one run of a check, at most
RETRIES = 3  # consecutive failures before an engine calls a ready container unhealthy
# `$1` URL, `$2` status: prints the server's response headers, succeeds when the last
# status line has the expected status.
HTTP_CHECK = (
    f'out=$({BUSYBOX} wget -q -S -O /dev/null "$1" 2>&1); echo "$out"; '
    f'echo "$out" | {BUSYBOX} grep "HTTP/" | {BUSYBOX} tail -n 1 | {BUSYBOX} grep -qE " $2( |$)"'
)


@dataclass(frozen=True)
class Readiness:
    """One readiness check (see the module's docstring); `kind` says which fields count."""

    kind: str
    port: int = 0  # tcp
    url: str = ""  # http
    status: int = 200  # http
    pattern: str = ""  # log: a regular expression searched in the container's output
    command: tuple[str, ...] = ()  # command: an argv, or one shell command line
    shell: bool = False  # command: run `command[0]` with busybox sh -c
    timeout: float = 60.0
    interval: float = 1.0

    @property
    def check_time_limit(self) -> float:
        return min(CHECK_TIME_LIMIT, self.timeout)

    def describe(self) -> str:
        """The check in words, for messages: `http check of http://...:8080/ (status 200)`."""
        if self.kind == "tcp":
            return f"tcp check of port {self.port}"
        if self.kind == "http":
            return f"http check of {self.url} (status {self.status})"
        if self.kind == "log":
            return f"log check for {self.pattern!r}"
        return f"command check {' '.join(self.command)!r}"

    def argv(self) -> list[str] | None:
        """The command that runs the check inside the container (None for a log check)."""
        if self.kind == "tcp":
            # nc runs `true` once connected: exit 0 when the port accepts a connection
            return [BUSYBOX, "nc", "-w", "2", "127.0.0.1", str(self.port), "-e", BUSYBOX, "true"]
        if self.kind == "http":
            return [BUSYBOX, "sh", "-c", HTTP_CHECK, "http-check", self.url, str(self.status)]
        if self.kind == "command":
            return [BUSYBOX, "sh", "-c", self.command[0]] if self.shell else list(self.command)
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Readiness:
        data = json.loads(text)
        data["command"] = tuple(data.get("command", ()))
        return cls(**data)


def from_annotations(annotations: Iterable[tuple[str, str]]) -> Readiness | None:
    """The check an image's annotations (name, value) carry, the last one winning."""
    for name, value in reversed(list(annotations)):
        if name == ANNOTATION:
            try:
                return Readiness.from_json(value)
            except (ValueError, TypeError):
                return None  # not written by dgr: no check rather than a crash
    return None


def http_port(url: str) -> int:
    """The port of an http:// URL (80 when the URL names none)."""
    return urlsplit(url).port or 80


def _nanoseconds(seconds: float) -> int:
    return int(round(seconds * 1e9))


def oci_healthcheck(readiness: Readiness | None) -> dict[str, Any] | None:
    """The `Healthcheck` of an OCI image config (Docker's schema), None for no or a log check."""
    argv = readiness.argv() if readiness is not None else None
    if readiness is None or argv is None:
        return None
    return {
        "Test": ["CMD", *argv],
        "Interval": _nanoseconds(readiness.interval),
        "Timeout": _nanoseconds(readiness.check_time_limit),
        "StartPeriod": _nanoseconds(readiness.timeout),
        "Retries": RETRIES,
    }


def kube_probe(readiness: Readiness | None) -> dict[str, Any] | None:
    """A Kubernetes `readinessProbe`, None for no or a log check. tcp and http use the
    kubelet's own probes (an http probe accepts any status 200-399: a check expecting
    another status runs the command instead)."""
    argv = readiness.argv() if readiness is not None else None
    if readiness is None or argv is None:
        return None
    probe: dict[str, Any]
    if readiness.kind == "tcp":
        probe = {"tcpSocket": {"port": readiness.port}}
    elif readiness.kind == "http" and 200 <= readiness.status < 400:
        parts = urlsplit(readiness.url)
        path = parts.path or "/"
        probe = {
            "httpGet": {
                "path": f"{path}?{parts.query}" if parts.query else path,
                "port": http_port(readiness.url),
            }
        }
    else:
        probe = {"exec": {"command": argv}}
    probe.update(
        periodSeconds=max(1, math.ceil(readiness.interval)),
        timeoutSeconds=max(1, math.ceil(readiness.check_time_limit)),
        failureThreshold=RETRIES,
    )
    return probe
