"""Publishing a container's TCP ports on the host (`dgr run --publish HOSTPORT:PORT`, and
`address(port)` of the test containers).

The container has a network namespace of its own, so a port it listens on is reachable only
from inside. For each published port, socat listens on the host and, per connection, runs
a second socat inside the container's network namespace (through nsenter) that connects to
the port there. The listeners die with dgr (setpriv --pdeathsig), so none is left behind.
A host port 0 lets the kernel choose a free port (no race between choosing and binding);
:func:`listening_port` then reads which one socat got from /proc.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dgr.errors import ContainerError
from dgr.manifest import Port
from dgr.process import require_tool, spawn

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class PortMapping:
    """The container's TCP `port`, published on the host at `host_ip:host_port`."""

    host_port: int
    port: int
    host_ip: str = LOCALHOST


def parse_ports(specs: Sequence[str], ports: Sequence[Port]) -> list[PortMapping]:
    """`[HOSTIP:]HOSTPORT:PORT`, where PORT is a number or the name of one of the app's ports."""
    by_name = {p.name: p for p in ports}
    mappings = []
    for spec in specs:
        parts = spec.rsplit(":", 2)
        if len(parts) < 2:
            raise ContainerError(f"port {spec!r}: use HOSTPORT:PORT (PORT a number or a port name)")
        host_ip = parts[0] if len(parts) == 3 else LOCALHOST
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
    # setpriv: socat's own children (one per connection) die with it too.
    return spawn(
        [setpriv, "--pdeathsig", "KILL", "--", socat, listen, f"EXEC:{inside}"],
        session=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(listeners: Sequence[subprocess.Popen[bytes]]) -> None:
    for listener in listeners:
        listener.kill()
        listener.wait()


def _listening_ports(pid: int) -> list[int]:
    """The TCP ports that process `pid` listens on (from its socket inodes and /proc/net)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    ports = []
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local address (hex ip:port), state 0A = LISTEN, inode
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def listening_port(listener: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """The host port that `listener` (started by :func:`forward`) listens on, once it does."""
    deadline = time.monotonic() + timeout
    while True:
        ports = _listening_ports(listener.pid)
        if ports:
            return ports[0]
        if listener.poll() is not None:
            raise ContainerError(f"socat could not listen on the host (exit code {listener.returncode})")
        if time.monotonic() > deadline:
            raise ContainerError(f"socat is not listening after {timeout:.0f}s")
        time.sleep(0.002)


def declared_port(port: int | str, ports: Sequence[Port], where: str) -> int:
    """The number of a TCP port the manifest declares, given by number or by name."""
    __tracebackhide__ = True
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    for declared in ports:
        if port in (declared.name, declared.port) or (
            isinstance(port, int) and declared.port <= port < declared.port + declared.count
        ):
            if declared.protocol != "tcp":
                raise ContainerError(
                    f"port {declared.name} ({declared.port}) of {where} is {declared.protocol}: "
                    "only TCP ports are forwarded"
                )
            return port if isinstance(port, int) else declared.port
    known = ", ".join(f"{p.name}={p.port}" for p in ports) or "none"
    raise ContainerError(
        f"port {port!r} is not declared in the manifest of {where} (ports: {known})",
        hint="declare it under aci.app.ports",
    )


class HostPorts:
    """Host addresses of a running container's TCP ports, each forwarded on first use and
    released by :meth:`close`. `netns_pid` gives the PID whose network namespace to enter."""

    def __init__(self, netns_pid: Callable[[], int], host_ip: str = LOCALHOST) -> None:
        self.netns_pid = netns_pid
        self.host_ip = host_ip
        self._listeners: dict[int, tuple[subprocess.Popen[bytes], int]] = {}

    def address(self, port: int) -> tuple[str, int]:
        """`(host, port)` on the host, forwarded to `port` inside the container."""
        found = self._listeners.get(port)
        if found is None:
            listener = forward(PortMapping(0, port, self.host_ip), self.netns_pid())
            try:
                found = (listener, listening_port(listener))
            except BaseException:
                stop([listener])
                raise
            self._listeners[port] = found
        return self.host_ip, found[1]

    def close(self) -> None:
        stop([listener for listener, _ in self._listeners.values()])
        self._listeners.clear()
