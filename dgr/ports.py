"""Publishing a container's TCP ports on the host (`dgr run --publish HOSTPORT:PORT`).

The container has a network namespace of its own, so a port it listens on is reachable only
from inside. For each published port, socat listens on the host and, per connection, runs
a second socat inside the container's network namespace (through nsenter) that connects to
the port there. The listeners die with dgr (setpriv --pdeathsig), so none is left behind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from dgr.errors import ContainerError
from dgr.manifest import Port
from dgr.process import require_tool


@dataclass(frozen=True)
class PortMapping:
    """The container's TCP `port`, published on the host at `host_ip:host_port`."""

    host_port: int
    port: int
    host_ip: str = "127.0.0.1"


def parse_ports(specs: Sequence[str], ports: Sequence[Port]) -> list[PortMapping]:
    """`[HOSTIP:]HOSTPORT:PORT`, where PORT is a number or the name of one of the app's ports."""
    by_name = {p.name: p for p in ports}
    mappings = []
    for spec in specs:
        parts = spec.rsplit(":", 2)
        if len(parts) < 2:
            raise ContainerError(f"port {spec!r}: use HOSTPORT:PORT (PORT a number or a port name)")
        host_ip = parts[0] if len(parts) == 3 else "127.0.0.1"
        host_port, target = parts[-2], parts[-1]
        named = by_name.get(target)
        if named is not None and named.protocol != "tcp":
            raise ContainerError(
                f"port {spec!r}: only TCP ports can be published ({target} is {named.protocol})"
            )
        port = str(named.port) if named is not None else target
        if not (host_port.isdigit() and port.isdigit()) or not (
            0 < int(host_port) < 65536 and 0 < int(port) < 65536
        ):
            known = ", ".join(sorted(by_name)) or "none"
            raise ContainerError(
                f"port {spec!r}: ports are numbers in 1-65535 or port names (known: {known})"
            )
        mappings.append(PortMapping(int(host_port), int(port), host_ip))
    return mappings


def forward(mapping: PortMapping, netns_pid: int) -> subprocess.Popen[bytes]:
    """Start the host listener of `mapping` for the container whose init is `netns_pid`."""
    socat = require_tool("socat")
    nsenter = require_tool("nsenter", "util-linux")
    setpriv = require_tool("setpriv", "util-linux")
    # socat reads `:` and `,` in an address as separators: escape them in the inner command.
    inside = f"{nsenter} --net=/proc/{netns_pid}/ns/net -- {socat} STDIO TCP\\:127.0.0.1\\:{mapping.port}"
    listen = f"TCP-LISTEN:{mapping.host_port},bind={mapping.host_ip},fork,reuseaddr"
    return subprocess.Popen(
        [setpriv, "--pdeathsig", "KILL", "--", socat, listen, f"EXEC:{inside}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(listeners: Sequence[subprocess.Popen[bytes]]) -> None:
    for listener in listeners:
        listener.kill()
        listener.wait()
