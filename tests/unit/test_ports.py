from __future__ import annotations

import pytest

from dgr.errors import ContainerError
from dgr.manifest import Port
from dgr.ports import PortMapping, declared_port, parse_ports

PORTS = (Port("http", 8080), Port("dns", 53, protocol="udp"))


def test_numbers_names_and_host_ip() -> None:
    assert parse_ports(["18080:8080", "18081:http", "0.0.0.0:18082:http"], PORTS) == [
        PortMapping(18080, 8080),
        PortMapping(18081, 8080),
        PortMapping(18082, 8080, "0.0.0.0"),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("8080", "HOSTPORT:PORT"),
        ("x:8080", "numbers"),
        ("18080:nope", "known: dns, http"),
        ("5353:dns", "TCP"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ContainerError, match=message):
        parse_ports([spec], PORTS)


def test_declared_port_by_name_number_or_range() -> None:
    ports = (*PORTS, Port("range", 9000, count=3))
    assert [declared_port(p, ports, "aci-x") for p in ("http", 8080, "8080", 9002)] == [
        8080,
        8080,
        8080,
        9002,
    ]
    with pytest.raises(
        ContainerError, match=r"port 9003 is not declared in the manifest of aci-x \(ports: "
    ):
        declared_port(9003, ports, "aci-x")
    with pytest.raises(ContainerError, match=r"port dns \(53\) of aci-x is udp: only TCP"):
        declared_port(53, ports, "aci-x")
