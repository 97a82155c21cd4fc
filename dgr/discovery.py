"""appc image discovery: an image name plus labels → where to download it (SPEC §9).

The walk (reference/appc.md §4): for `example.com/a/b`, GET
`https://example.com/a/b?ac-discovery=1`, then `example.com/a`, then `example.com`, and stop at
the first page whose `<meta name="ac-...">` tags give an endpoint of the wanted kind. Plain
HTTP is tried after HTTPS only for a host that the configuration lists as insecure (`http:HOST`
in `insecureOptions`); TLS certificates are verified unless the host is listed as `tls:HOST`.
The same policy holds for every request and every redirect hop (see :class:`PolicySession`).

The configuration (`discovery` section of config.yml, every key optional; docs/store.md)::

    discovery:
      hosts: {example.test: "127.0.0.1:8080"}  # discovery for names under example.test goes there
      timeout: 30                              # seconds to connect and between bytes read
      newerVersionCheck: true                  # also ask discovery for newer dependency versions
      newerVersionCacheSeconds: 3600           # how long such an answer is reused
      retries: 2                               # downloads (pages: HTTP 5xx) tried again
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import requests

from dgr.config import Config
from dgr.errors import DgrError
from dgr.log import log

# http: plain HTTP allowed; tls: certificates not checked; image: images accepted without a
# verified signature (as rkt's --insecure-options=image), setuid bits and capabilities kept.
INSECURE_OPTIONS = ("http", "tls", "image")
MAX_REDIRECTS = 10
MAX_PAGE_BYTES = 1 << 20  # a discovery page is small; do not read an endless one
DEFAULT_TIMEOUT = 30.0
DEFAULT_NEWER_CACHE_SECONDS = 3600
DEFAULT_RETRIES = 2
_UNRESOLVED = re.compile(r"\{[^{}]*\}")


class DiscoveryError(DgrError):
    """Discovery found no endpoint, or a request broke the host policy."""


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts may be reached over plain HTTP (`http`) or without TLS checks (`tls`).

    Built from `insecureOptions`: an entry `OPTION:HOST` (or `OPTION:HOST:PORT`) opts one host
    out; a bare `OPTION` opts every host out (discouraged; kept for the original's configs).
    HOST is the host actually contacted, after any `discovery.hosts` mapping.
    """

    everywhere: frozenset[str] = frozenset()
    hosts: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def allows(self, option: str, url: str) -> bool:
        """True when `option` (http or tls) is opted out of for the host of `url`."""
        if option in self.everywhere:
            return True
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        candidates = [host]
        if parts.port is not None:
            candidates.insert(0, f"{host}:{parts.port}")
        return any(option in self.hosts.get(c, ()) for c in candidates)


def host_policy(config: Config) -> HostPolicy:
    """Parse `config.insecure_options` into a :class:`HostPolicy`; unknown options are errors."""
    everywhere: set[str] = set()
    hosts: dict[str, set[str]] = {}
    for entry in config.insecure_options:
        option, _, host = entry.partition(":")
        option = option.strip()
        if option not in INSECURE_OPTIONS:
            raise DgrError(
                f"unknown insecure option {entry!r}",
                path=config.home / "config.yml",
                key="insecureOptions",
                hint="use http:HOST (plain HTTP allowed), tls:HOST (certificate not checked) or "
                "image:HOST (unsigned images accepted)",
            )
        if host.strip():
            hosts.setdefault(host.strip(), set()).add(option)
        else:
            everywhere.add(option)
    return HostPolicy(frozenset(everywhere), {h: frozenset(o) for h, o in hosts.items()})


@dataclass(frozen=True)
class DiscoverySettings:
    """The `discovery` section of config.yml, checked, with defaults."""

    hosts: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    newer_version_check: bool = True
    newer_version_cache_seconds: float = DEFAULT_NEWER_CACHE_SECONDS
    retries: int = DEFAULT_RETRIES  # downloads tried again after a network failure or HTTP 5xx


def discovery_settings(config: Config) -> DiscoverySettings:
    """Read and check the `discovery` section (absent: defaults)."""
    raw = config.section("discovery") or {}
    where = config.home / "config.yml"
    if not isinstance(raw, dict):
        raise DgrError("discovery must be a mapping", path=where, key="discovery")
    known = {"hosts", "timeout", "newerVersionCheck", "newerVersionCacheSeconds", "retries"}
    for key in raw:
        if key not in known:
            raise DgrError(
                f"unknown key {key!r} in discovery",
                path=where,
                key=f"discovery.{key}",
                hint=f"known keys: {', '.join(sorted(known))}",
            )
    hosts = raw.get("hosts") or {}
    if not isinstance(hosts, dict) or not all(isinstance(v, str) and v for v in hosts.values()):
        raise DgrError("discovery.hosts must map a domain to HOST[:PORT]", path=where, key="discovery.hosts")
    for target in hosts.values():
        if "/" in target:
            raise DgrError(
                f"discovery.hosts: {target!r} must be HOST[:PORT], without scheme or path",
                path=where,
                key="discovery.hosts",
            )

    def number(key: str, default: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise DgrError(
                f"discovery.{key} must be a number of seconds", path=where, key=f"discovery.{key}"
            )
        return float(value)

    check = raw.get("newerVersionCheck", True)
    if not isinstance(check, bool):
        raise DgrError(
            "discovery.newerVersionCheck must be true or false",
            path=where,
            key="discovery.newerVersionCheck",
        )
    retries = raw.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise DgrError(
            "discovery.retries must be a whole number, 0 or more", path=where, key="discovery.retries"
        )
    return DiscoverySettings(
        retries=retries,
        hosts={str(k).lower(): v.lower() for k, v in hosts.items()},
        timeout=number("timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
        newer_version_check=check,
        newer_version_cache_seconds=number("newerVersionCacheSeconds", DEFAULT_NEWER_CACHE_SECONDS),
    )


# --- HTTP ---------------------------------------------------------------------------------


class InsecureRequestRefused(requests.RequestException):
    """A plain-HTTP request (or redirect hop) to a host not listed as `http:HOST`."""


class PolicySession(requests.Session):
    """A requests session that applies the host policy to every request and redirect hop.

    Each hop passes through :meth:`send`, so a redirect from HTTPS to plain HTTP is refused
    unless the target host allows it, and TLS is verified per hop, not per first URL.
    """

    def __init__(self, policy: HostPolicy, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.policy = policy
        self.timeout = timeout
        self.max_redirects = MAX_REDIRECTS

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = request.url or ""
        scheme = urlsplit(url).scheme
        if scheme == "http" and not self.policy.allows("http", url):
            raise InsecureRequestRefused(f"plain HTTP to {urlsplit(url).netloc} is not allowed")
        if scheme == "https" and self.policy.allows("tls", url):
            kwargs["verify"] = False
        elif kwargs.get("verify") is False:
            kwargs["verify"] = True  # only the host policy may turn verification off
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (min(self.timeout, 10.0), self.timeout)
        return super().send(request, **kwargs)


def session_for(config: Config) -> PolicySession:
    return PolicySession(host_policy(config), discovery_settings(config).timeout)


# --- meta tags ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaTag:
    """One `<meta name="ac-..." content="PREFIX URL">` tag."""

    kind: str
    prefix: str
    template: str


class _MetaParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[MetaTag] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta":
            return
        values = {k.lower(): v or "" for k, v in attrs}
        kind = values.get("name", "")
        if not kind.startswith("ac-"):
            return
        prefix, _, template = values.get("content", "").strip().partition(" ")
        if prefix and template.strip():
            self.tags.append(MetaTag(kind, prefix, template.strip()))


def parse_meta_tags(html: str) -> list[MetaTag]:
    """Every `ac-*` meta tag of an HTML page, in document order (malformed ones dropped)."""
    parser = _MetaParser()
    parser.feed(html)
    parser.close()
    return parser.tags


def render_template(template: str, values: Mapping[str, str]) -> str | None:
    """Replace each `{key}`; None when a `{...}` is left (the template needs another label)."""
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return None if _UNRESOLVED.search(out) else out


@dataclass(frozen=True)
class AciEndpoint:
    aci: str
    asc: str


@dataclass(frozen=True)
class Endpoints:
    """What discovery found for one name: image/signature URLs, key URLs, push endpoints."""

    acis: tuple[AciEndpoint, ...] = ()
    pubkeys: tuple[str, ...] = ()
    push: tuple[str, ...] = ()
    source: str = ""  # the discovery page that gave them

    def has(self, want: str) -> bool:
        return bool({"aci": self.acis, "pubkeys": self.pubkeys, "push": self.push}[want])


def endpoints_from_tags(
    tags: Iterable[MetaTag], name: str, labels: Mapping[str, str], source: str = ""
) -> Endpoints:
    """Apply the prefix rule (a plain string prefix of `name`) and render the templates.

    `labels` fill `{version}`, `{os}`, `{arch}` and any other `{label}`; `{ext}` is `aci` for
    the image and `aci.asc` for its signature (push templates get `aci`).
    """
    acis: list[AciEndpoint] = []
    pubkeys: list[str] = []
    push: list[str] = []
    for tag in tags:
        if not name.startswith(tag.prefix):
            continue
        values = {**labels, "name": name}
        if tag.kind == "ac-discovery":
            aci = render_template(tag.template, {**values, "ext": "aci"})
            asc = render_template(tag.template, {**values, "ext": "aci.asc"})
            if aci and asc:
                acis.append(AciEndpoint(aci, asc))
        elif tag.kind == "ac-discovery-pubkeys":
            pubkeys.append(tag.template)  # a literal URL, not a template
        elif tag.kind == "ac-push-discovery":
            url = render_template(tag.template, {**values, "ext": "aci"})
            if url:
                push.append(url)
    return Endpoints(tuple(acis), tuple(pubkeys), tuple(push), source)


# --- the walk -----------------------------------------------------------------------------


def prefixes(name: str) -> list[str]:
    """`a.com/b/c` → [`a.com/b/c`, `a.com/b`, `a.com`]."""
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]


def discovery_urls(prefix: str, settings: DiscoverySettings, policy: HostPolicy) -> list[str]:
    """The URLs to try for one prefix: HTTPS, then HTTP when the host allows it."""
    domain, _, path = prefix.partition("/")
    authority = settings.hosts.get(domain, domain)
    urls = [f"https://{authority}/{path}?ac-discovery=1"]
    plain = f"http://{authority}/{path}?ac-discovery=1"
    if policy.allows("http", plain):
        urls.append(plain)
    return urls


def default_labels(
    version: str, os_: str, arch: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Discovery labels: `version` (default `latest`), `os`, `arch` and any `extra` ones."""
    return {**(extra or {}), "version": version or "latest", "os": os_, "arch": arch}


def discover(
    name: str,
    labels: Mapping[str, str],
    config: Config,
    *,
    want: str = "aci",
    session: requests.Session | None = None,
) -> Endpoints:
    """Endpoints for `name` from the first prefix (longest first) that has one of kind `want`.

    `want` is `aci`, `pubkeys` or `push`. Raises DiscoveryError when no prefix gives one.
    """
    settings = discovery_settings(config)
    policy = host_policy(config)
    own = session is None
    http = session or PolicySession(policy, settings.timeout)
    tried: list[str] = []
    try:
        for prefix in prefixes(name):
            for url in discovery_urls(prefix, settings, policy):
                tried.append(url)
                page = _get_page(http, url, settings.retries)
                if page is None:
                    continue
                found = endpoints_from_tags(parse_meta_tags(page), name, labels, url)
                if found.has(want):
                    log.debug("discovery of %s: %s", name, found)
                    return found
                break  # the page answered without what we want: go up, not to plain HTTP
    finally:
        if own:
            http.close()
    raise DiscoveryError(
        f"discovery found no {want} endpoint for {name}",
        details="tried:\n" + "\n".join(tried),
        hint="check the name; for a host without HTTPS add http:HOST to insecureOptions; "
        "discovery.hosts maps a domain to another server",
    )


def _get_page(http: requests.Session, url: str, retries: int) -> str | None:
    """The page at `url` (at most MAX_PAGE_BYTES of it), or None on any failure or non-200.
    An HTTP 5xx is asked again `retries` times, 1, 2, 4... seconds apart (a server that does
    not answer is not: the walk moves on, see discover)."""
    for attempt in range(retries + 1):
        status, page = _get_page_once(http, url)
        if status < 500 or attempt == retries:
            return page
        delay = min(2.0**attempt, 30.0)
        log.warning(
            "discovery: %s: HTTP %s; trying again in %.0fs (%d/%d)", url, status, delay, attempt + 1, retries
        )
        time.sleep(delay)
    return None


def _get_page_once(http: requests.Session, url: str) -> tuple[int, str | None]:
    """The status and page of one GET of `url` (status 0 when no answer came)."""
    try:
        with http.get(url, headers={"Accept": "text/html"}, stream=True) as response:
            if response.status_code != 200:
                log.debug("discovery: %s: HTTP %s", url, response.status_code)
                return response.status_code, None
            body = b""
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) >= MAX_PAGE_BYTES:
                    break
            return 200, body[:MAX_PAGE_BYTES].decode(response.encoding or "utf-8", "replace")
    except requests.RequestException as exc:
        log.debug("discovery: %s: %s", url, exc)
        return 0, None
