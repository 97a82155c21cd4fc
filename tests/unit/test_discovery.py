"""appc discovery logic: meta tags, the prefix rule, templates, host policy, settings, versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from dgr.config import Config
from dgr.discovery import (
    DiscoverySettings,
    HostPolicy,
    InsecureRequestRefused,
    PolicySession,
    discovery_settings,
    discovery_urls,
    endpoints_from_tags,
    host_policy,
    parse_meta_tags,
    prefixes,
    render_template,
)
from dgr.errors import DgrError
from dgr.fetch import FetchError, check_manifest, sign_entry_for
from dgr.names import ImageName
from dgr.newer_versions import version_in_url

PAGE = """<!DOCTYPE html>
<html><head>
<meta name="ac-discovery" content="example.com https://example.com/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery" content="example.com/other https://other.example.com/{name}.{ext}">
<meta name="ac-discovery" content="example.com hdfs://example.com/{name}-{channel}.{ext}">
<meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
<meta name="ac-push-discovery" content="example.com https://example.com/push/{name}?v={version}">
<meta name="description" content="not ours">
<meta name="ac-discovery" content="no-template-here">
<META NAME="ac-discovery" CONTENT="example.com/app  https://mirror.example.com/{name}.{ext}" />
</head><body></body></html>
"""

LABELS = {"version": "1.0", "os": "linux", "arch": "amd64"}


def config(tmp_path: Path, insecure: tuple[str, ...] = (), **raw: Any) -> Config:
    return Config(home=tmp_path, insecure_options=insecure, raw=raw)


def test_parse_meta_tags_keeps_ac_tags_with_prefix_and_url() -> None:
    tags = parse_meta_tags(PAGE)
    assert [(t.kind, t.prefix) for t in tags] == [
        ("ac-discovery", "example.com"),
        ("ac-discovery", "example.com/other"),
        ("ac-discovery", "example.com"),
        ("ac-discovery-pubkeys", "example.com"),
        ("ac-push-discovery", "example.com"),
        ("ac-discovery", "example.com/app"),
    ]
    assert tags[-1].template == "https://mirror.example.com/{name}.{ext}"


def test_endpoints_apply_string_prefix_rule_and_render_every_kind() -> None:
    found = endpoints_from_tags(parse_meta_tags(PAGE), "example.com/app", LABELS)
    assert [e.aci for e in found.acis] == [
        "https://example.com/example.com/app-1.0-linux-amd64.aci",
        "https://mirror.example.com/example.com/app.aci",
    ]
    assert found.acis[0].asc == "https://example.com/example.com/app-1.0-linux-amd64.aci.asc"
    assert found.pubkeys == ("https://example.com/pubkeys.gpg",)
    assert found.push == ("https://example.com/push/example.com/app?v=1.0",)


def test_prefix_rule_is_a_plain_string_prefix() -> None:
    found = endpoints_from_tags(parse_meta_tags(PAGE), "example.com/otherthing", LABELS)
    assert "https://other.example.com/example.com/otherthing.aci" in [e.aci for e in found.acis]
    assert endpoints_from_tags(parse_meta_tags(PAGE), "example.org/app", LABELS).acis == ()


def test_any_label_fills_its_placeholder_and_unresolved_templates_are_skipped() -> None:
    assert render_template("{name}-{channel}", {"name": "a", "channel": "beta"}) == "a-beta"
    assert render_template("{name}-{channel}", {"name": "a"}) is None
    found = endpoints_from_tags(parse_meta_tags(PAGE), "example.com/app", {**LABELS, "channel": "beta"})
    assert "hdfs://example.com/example.com/app-beta.aci" in [e.aci for e in found.acis]


def test_prefixes_walk_from_full_name_to_domain() -> None:
    assert prefixes("example.com/a/b") == ["example.com/a/b", "example.com/a", "example.com"]
    assert prefixes("example.com") == ["example.com"]


def test_host_policy_per_host_and_port(tmp_path: Path) -> None:
    policy = host_policy(config(tmp_path, ("http:example.test", "tls:mirror.lan:8443")))
    assert policy.allows("http", "http://example.test/x")
    assert not policy.allows("http", "http://other.test/x")
    assert not policy.allows("tls", "https://example.test/x")
    assert policy.allows("tls", "https://mirror.lan:8443/x")
    assert not policy.allows("tls", "https://mirror.lan/x")
    assert host_policy(config(tmp_path, ("http",))).allows("http", "http://anything/")


def test_unknown_insecure_option_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DgrError, match="unknown insecure option 'signature:x'"):
        host_policy(config(tmp_path, ("signature:x",)))


def test_discovery_urls_https_first_http_only_when_insecure() -> None:
    settings = DiscoverySettings(hosts={"example.test": "127.0.0.1:8080"})
    secure = discovery_urls("example.test/app", settings, HostPolicy())
    assert secure == ["https://127.0.0.1:8080/app?ac-discovery=1"]
    loose = discovery_urls("example.test", settings, HostPolicy(hosts={"127.0.0.1": frozenset({"http"})}))
    assert loose == ["https://127.0.0.1:8080/?ac-discovery=1", "http://127.0.0.1:8080/?ac-discovery=1"]


def test_discovery_settings_checked(tmp_path: Path) -> None:
    settings = discovery_settings(
        config(tmp_path, discovery={"hosts": {"Example.test": "127.0.0.1:1"}, "timeout": 3})
    )
    assert settings.hosts == {"example.test": "127.0.0.1:1"} and settings.timeout == 3
    for bad in ({"hots": {}}, {"hosts": {"a": "http://x"}}, {"timeout": "soon"}, {"newerVersionCheck": 1}):
        with pytest.raises(DgrError):
            discovery_settings(config(tmp_path, discovery=bad))


def test_session_refuses_plain_http_for_a_secure_host() -> None:
    with PolicySession(HostPolicy()) as session, pytest.raises(InsecureRequestRefused):
        session.get("http://127.0.0.1:9/never")
    assert issubclass(InsecureRequestRefused, requests.RequestException)


def test_sign_entry_for_domain_then_domainless_fallback(tmp_path: Path) -> None:
    cfg = config(
        tmp_path,
        sign=[
            {"domains": ["a.test"], "keyring": "a.gpg"},
            {"domains": ["b.test"], "disabled": True},
            {"keyring": "/keys/any.gpg"},
            {"keyring": "/keys/last.gpg"},
        ],
    )
    a = sign_entry_for("a.test", cfg)
    assert a is not None and a.keyring == tmp_path / "a.gpg"
    b = sign_entry_for("b.test", cfg)
    assert b is not None and b.disabled
    other = sign_entry_for("c.test", cfg)
    assert other is not None and other.keyring == Path("/keys/any.gpg")
    assert sign_entry_for("c.test", config(tmp_path)) is None
    with pytest.raises(DgrError, match="needs a keyring"):
        sign_entry_for("a.test", config(tmp_path, sign=[{"domains": ["a.test"]}]))
    with pytest.raises(DgrError, match="unknown key"):
        sign_entry_for("a.test", config(tmp_path, sign=[{"keyring": "k", "domain": ["a.test"]}]))


def test_check_manifest_name_and_labels() -> None:
    name = ImageName("example.test/app", "1.0")
    good = {
        "acKind": "ImageManifest",
        "name": "example.test/app",
        "labels": [{"name": "version", "value": "1.0"}, {"name": "os", "value": "linux"}],
    }
    check_manifest(good, name, {**LABELS, "version": "1.0"}, "u")
    with pytest.raises(FetchError, match="not 'example.test/app'"):
        check_manifest({**good, "name": "example.test/evil"}, name, LABELS, "u")
    with pytest.raises(FetchError, match="version=1.0, not version=2.0"):
        check_manifest(good, name.with_version("2.0"), {**LABELS, "version": "2.0"}, "u")
    check_manifest(good, name.with_version(""), {**LABELS, "version": "latest"}, "u")


@pytest.mark.parametrize(
    ("name", "path", "expected"),
    [
        ("aci.awired.net/aci-glibc", "/aci.awired.net/aci-glibc/aci-glibc-2.21-1-linux-amd64.aci", "2.21-1"),
        ("aci.awired.net/aci-glibc", "/aci.awired.net/aci-glibc/aci-gli.aci", None),
        (
            "example.test/aci-debian",
            "/nexus/content/linux/amd64/aci-debian/8.8-6/aci-debian-8.8-6.aci",
            "8.8-6",
        ),
        ("example.test/aci-go1", "/images/example.test/aci-go1-2.0-linux-amd64.aci", "2.0"),
        ("example.test/aci-go1", "/images/example.test/aci-go1-latest-linux-amd64.aci", None),
    ],
)
def test_version_in_redirect_url(name: str, path: str, expected: str | None) -> None:
    assert version_in_url("https://h" + path, ImageName(name), "linux", "amd64") == expected


class _Recorder(requests.adapters.BaseAdapter):
    """A transport that answers 200 and records the TLS verification asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.verify: list[object] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: object = None,
        verify: object = True,
        cert: object = None,
        proxies: object = None,
    ) -> requests.Response:
        self.verify.append(verify)
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url or "", request
        return response

    def close(self) -> None:
        pass


def test_tls_verification_is_off_only_for_hosts_listed_as_tls() -> None:
    policy = HostPolicy(hosts={"lab.test": frozenset({"tls"})})
    with PolicySession(policy) as session:
        recorder = _Recorder()
        session.mount("https://", recorder)
        session.get("https://lab.test/x")
        session.get("https://other.test/x")
        session.get("https://other.test/x", verify=False)  # callers cannot turn it off
    assert recorder.verify[0] is False
    assert all(v not in (False, None) for v in recorder.verify[1:])  # True or a CA bundle path
