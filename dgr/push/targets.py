"""The `push` section of config.yml: where images go, and with which credentials.

A list of targets; every image is pushed to each target whose `domains` (if given) lists
the image's domain::

    push:
      - type: oci                         # a registry (distribution API), through skopeo
        registry: registry.example.com:5000
        namespace: team                   # optional: registry/team/<name without domain>:<version>
        username: alice                   # optional, with password ...
        password: s3cret
        authFile: ~/.config/containers/auth.json   # ... or a docker/podman auth.json
        domains: [aci.example.com]        # optional: only images of these domains
        timeout: 1800                     # optional: seconds one attempt may take (oci: 1800)
        retries: 2                        # optional: attempts after a network failure (2)
      - type: appc                        # an acserver (reference/appc.md §6)
        url: https://aci.example.com      # optional: without it, ac-push-discovery finds it
        username: alice
        password: s3cret

Credentials come from here, from the named auth file (relative paths are relative to the
configuration folder), or else from the containers auth file that `podman login` and
`docker login` write (:func:`containers_auth_file`). They are never logged: :class:`Credentials`
hides the password from `repr`, and skopeo gets them through an auth file, never in its
arguments.

A push that fails on the network (:class:`NetworkError`: unreachable, timed out, HTTP 5xx)
is tried again `retries` times, after 1, 2, 4... seconds (:func:`with_retries`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from dgr.config import Config
from dgr.errors import DgrError
from dgr.log import log

TARGET_TYPES = ("oci", "appc")
COMMON_KEYS = {"type", "username", "password", "authFile", "domains", "timeout", "retries"}
KEYS = {"oci": COMMON_KEYS | {"registry", "namespace"}, "appc": COMMON_KEYS | {"url"}}
# Seconds one network step may take: a whole skopeo copy (oci), one HTTP request (appc; an
# upload counts from the last byte sent).
DEFAULT_TIMEOUT = {"oci": 1800.0, "appc": 60.0}
DEFAULT_RETRIES = 2
RETRY_DELAY = 1.0  # then doubled after each failure
MAX_RETRY_DELAY = 30.0
AUTH_FILE_ENV = "REGISTRY_AUTH_FILE"
T = TypeVar("T")


class PushError(DgrError):
    """A push failed, or the push configuration is wrong."""


class NetworkError(PushError):
    """A push failed on the network (unreachable, timed out, HTTP 5xx): worth another try."""


@dataclass(frozen=True)
class Credentials:
    """A user name and a password; the password never appears in `repr` (nor in logs)."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Target:
    """One entry of the `push` section, checked."""

    type: Literal["oci", "appc"]
    index: int
    registry: str = ""  # oci: HOST[:PORT]
    namespace: str = ""  # oci: path below the registry
    url: str = ""  # appc: the acserver's base URL (or its .../startupload URL); "" = discovery
    credentials: Credentials | None = None
    auth_file: Path | None = None
    domains: tuple[str, ...] = ()
    timeout: float = 0.0  # 0: DEFAULT_TIMEOUT of the type
    retries: int = DEFAULT_RETRIES

    @property
    def step_timeout(self) -> float:
        return self.timeout or DEFAULT_TIMEOUT[self.type]

    @property
    def key(self) -> str:
        return f"push[{self.index}]"

    def describe(self) -> str:
        if self.type == "oci":
            return f"oci registry {self.registry}"
        return f"acserver {self.url}" if self.url else "acserver (ac-push-discovery)"

    def applies_to(self, domain: str) -> bool:
        return not self.domains or domain.lower() in self.domains


def push_targets(config: Config) -> list[Target]:
    """The `push` section, checked (absent: no target). A single mapping is one target."""
    raw = config.section("push")
    where = config.home / "config.yml"
    if raw is None:
        return []
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise PushError(
            "push must be a list of targets ({type: oci, registry: ...} or {type: appc, ...})",
            path=where,
            key="push",
        )
    return [_target(item, i, config) for i, item in enumerate(raw)]


def _target(item: Any, index: int, config: Config) -> Target:
    where = config.home / "config.yml"
    key = f"push[{index}]"
    if not isinstance(item, dict):
        raise PushError(f"{key} must be a mapping", path=where, key=key)
    kind = item.get("type")
    if kind not in TARGET_TYPES:
        raise PushError(f"{key}.type must be oci or appc (got {kind!r})", path=where, key=f"{key}.type")
    unknown = sorted(set(item) - KEYS[kind])
    if unknown:
        raise PushError(
            f"unknown key {unknown[0]!r} in {key}",
            path=where,
            key=f"{key}.{unknown[0]}",
            hint=f"known keys for type {kind}: {', '.join(sorted(KEYS[kind]))}",
        )

    def text(name: str) -> str:
        value = item.get(name, "")
        if value is None:
            return ""
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise PushError(f"{key}.{name} must be a string", path=where, key=f"{key}.{name}")
        return str(value)

    username, password = text("username"), text("password")
    if bool(username) != bool(password):
        raise PushError(
            f"{key}: username and password go together",
            path=where,
            key=key,
            hint="give both, or use authFile",
        )
    credentials = Credentials(username, password) if username else None
    auth_file = None
    if text("authFile"):
        if credentials is not None:
            raise PushError(f"{key}: give username/password or authFile, not both", path=where, key=key)
        auth_file = Path(text("authFile")).expanduser()
        auth_file = auth_file if auth_file.is_absolute() else config.home / auth_file
    domains = item.get("domains") or []
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise PushError(f"{key}.domains must be a list of domains", path=where, key=f"{key}.domains")
    lowered = tuple(d.lower() for d in domains)
    timeout = item.get("timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise PushError(f"{key}.timeout must be a number of seconds", path=where, key=f"{key}.timeout")
    retries = item.get("retries", DEFAULT_RETRIES)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise PushError(
            f"{key}.retries must be a whole number (0: no retry)", path=where, key=f"{key}.retries"
        )
    if kind == "oci":
        registry = text("registry").strip().lower()
        if not registry or "/" in registry:
            raise PushError(
                f"{key}.registry must be HOST[:PORT] (no scheme, no path)",
                path=where,
                key=f"{key}.registry",
                hint="e.g. registry.example.com or 127.0.0.1:5000",
            )
        namespace = text("namespace").strip("/")
        return Target(
            "oci",
            index,
            registry=registry,
            namespace=namespace,
            credentials=credentials,
            auth_file=auth_file,
            domains=lowered,
            timeout=float(timeout),
            retries=retries,
        )
    url = text("url").rstrip("/")
    if url and urlsplit(url).scheme not in ("http", "https"):
        raise PushError(f"{key}.url must be an http:// or https:// URL", path=where, key=f"{key}.url")
    return Target(
        "appc",
        index,
        url=url,
        credentials=credentials,
        auth_file=auth_file,
        domains=lowered,
        timeout=float(timeout),
        retries=retries,
    )


# --- auth.json ------------------------------------------------------------------------------


def read_auth_file(path: Path) -> dict[str, Any]:
    """The `auths` mapping of a docker/podman auth.json (PushError when unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PushError(
            "auth file does not exist", path=path, hint="fix authFile in the push section"
        ) from None
    except (OSError, ValueError) as exc:
        raise PushError(f"cannot read the auth file: {exc}", path=path) from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise PushError(
            'the auth file has no "auths" mapping',
            path=path,
            hint='expected {"auths": {"HOST[:PORT]": {"auth": "base64(user:password)"}}}',
        )
    return auths


def credentials_from_auth_file(path: Path, host: str) -> Credentials | None:
    """The credentials that `path` holds for `host` (HOST[:PORT]), or None."""
    auths = read_auth_file(path)
    for key, entry in auths.items():
        bare = str(key).split("://", 1)[-1].rstrip("/").split("/", 1)[0].lower()
        if bare != host.lower():
            continue
        if not isinstance(entry, dict):
            raise PushError(
                f'the auth entry for {host} must be a mapping such as {{"auth": "..."}}',
                path=path,
                key=f"auths.{key}",
            )
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                user, sep, password = "", "", ""
            if not (sep and user):
                raise PushError(
                    f"the auth entry for {host} is not base64 of user:password",
                    path=path,
                    key=f"auths.{key}.auth",
                    hint="write it as `podman login` does, or give username/password in config.yml",
                )
            return Credentials(user, password)
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return Credentials(entry["username"], entry["password"])
    return None


def containers_auth_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The auth file `podman login` / `docker login` wrote, as containers-auth.json(5) finds
    it: $REGISTRY_AUTH_FILE (which must then exist), else the first that exists of
    $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json and
    ~/.docker/config.json; None when there is none."""
    env = os.environ if environ is None else environ
    explicit = env.get(AUTH_FILE_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise PushError(f"{AUTH_FILE_ENV}={explicit} does not exist", hint="log in first, or unset it")
        return path
    home = Path(env.get("HOME") or Path.home())
    candidates = [home / ".config/containers/auth.json", home / ".docker/config.json"]
    if env.get("XDG_RUNTIME_DIR"):
        candidates.insert(0, Path(env["XDG_RUNTIME_DIR"]) / "containers/auth.json")
    return next((path for path in candidates if path.is_file()), None)


def with_retries(attempt: Callable[[], T], target: Target, what: str) -> T:
    """`attempt()`, tried again up to `target.retries` times after a NetworkError, with a
    delay doubling from RETRY_DELAY seconds; the last error when every try failed."""
    for number in range(target.retries + 1):
        try:
            return attempt()
        except NetworkError as exc:
            if number == target.retries:
                if target.retries:
                    exc.message += f" (after {target.retries + 1} attempts)"
                raise
            delay = min(RETRY_DELAY * 2**number, MAX_RETRY_DELAY)
            log.warning(
                "%s: %s; trying again in %.0fs (%d/%d)", what, exc.message, delay, number + 1, target.retries
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def auth_file_json(host: str, credentials: Credentials) -> str:
    """An auth.json holding `credentials` for `host` (for skopeo's --dest-authfile)."""
    token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode()
    return json.dumps({"auths": {host: {"auth": token}}})
