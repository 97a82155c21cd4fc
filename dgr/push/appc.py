"""Push an ACI to an acserver-style server (reference/appc.md §6; SPEC §10).

1. The initiate URL: the target's `url` (`<url>/<app>-<version>-<os>-<arch>.aci/startupload`,
   or `url` itself when it already ends in `/startupload`), else the first `ac-push-discovery`
   endpoint that discovery finds for the image name (labels version, os, arch, ext=aci).
2. `POST` it (empty body): JSON with the upload and completion URLs.
3. `PUT` the manifest JSON, then the ACI as it is (`image.aci`, an uncompressed tar: the
   signature is made over this file), then `image.aci.asc` when the image is signed.
4. `POST {"success": true}` to the completion URL. The JSON `success` of the answer decides,
   since acserver answers HTTP 200 to a refused upload too. When a part fails, dgr first tells
   the server with `{"success": false, "reason": "error uploading <part>: ..."}`.

HTTP 200 and 400 are answers to read; anything else is an error (401/403: credentials).
Every request and redirect hop obeys the host policy (`insecureOptions`) through
:class:`dgr.discovery.PolicySession` and the target's timeout; basic auth comes from the
target's credentials or auth file, else from the containers auth file (`podman login`).
An unreachable server, a timeout or an HTTP 5xx is a NetworkError: `dgr.push` starts the
whole upload again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import requests

from dgr.aci import read_aci_manifest
from dgr.config import Config
from dgr.discovery import DiscoveryError, InsecureRequestRefused, default_labels, discover, session_for
from dgr.log import log
from dgr.names import ImageName
from dgr.push.targets import (
    Credentials,
    NetworkError,
    PushError,
    Target,
    containers_auth_file,
    credentials_from_auth_file,
)

UPLOAD_KEYS = ("upload_manifest_url", "upload_aci_url", "upload_signature_url", "completed_url")
PROGRESS_MIN_BYTES = 8 << 20  # smaller uploads: one line when done
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class AppcPush:
    """The outcome of one appc push."""

    initiate_url: str
    signed: bool


@dataclass(frozen=True)
class UploadUrls:
    manifest: str
    aci: str
    signature: str
    complete: str


def label(manifest: Mapping[str, Any], name: str) -> str:
    for item in manifest.get("labels") or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get("value"), str):
            return str(item["value"])
    return ""


def initiate_url(name: ImageName, manifest: Mapping[str, Any], target: Target, config: Config) -> str:
    """Where to `POST` to start the upload: the configured URL, else ac-push-discovery."""
    version = name.version or label(manifest, "version")
    os_, arch = label(manifest, "os"), label(manifest, "arch")
    missing = [n for n, v in (("os", os_), ("arch", arch)) if not v]
    if missing:
        raise PushError(f"cannot push {name} to an acserver: the manifest is missing label {missing[0]}")
    if target.url:
        if target.url.endswith("/startupload"):
            return target.url
        return f"{target.url}/{name.tiny_name}-{version or 'latest'}-{os_}-{arch}.aci/startupload"
    try:
        found = discover(name.name, default_labels(version, os_, arch), config, want="push")
    except DiscoveryError as exc:
        raise PushError(
            f"no acserver to push {name} to: {exc.message}",
            details=exc.details,
            hint=f"set url in {target.key} of the push section, or fix discovery ({exc.hint})",
        ) from None
    return found.push[0]


def credentials_for(target: Target, url: str) -> Credentials | None:
    """The target's credentials, else those its auth file or, failing that, the containers auth
    file holds for the host of `url`."""
    host = urlsplit(url).netloc
    if target.credentials is not None:
        return target.credentials
    if target.auth_file is not None:
        return credentials_from_auth_file(target.auth_file, host)
    login_file = containers_auth_file()
    if login_file is None:
        return None
    try:
        return credentials_from_auth_file(login_file, host)
    except PushError as exc:  # e.g. a docker config.json holding only a credential helper
        log.debug("no credentials for %s in %s: %s", host, login_file, exc)
        return None


class _Progress:
    """A file body that logs upload progress (every 10% of big files, once for small ones)."""

    def __init__(self, handle: IO[bytes], size: int, what: str) -> None:
        self.handle = handle
        self.size = size
        self.what = what
        self.done = 0
        self.next = size // 10 if size >= PROGRESS_MIN_BYTES else 0

    def __len__(self) -> int:  # requests sends Content-Length, not chunks
        return self.size

    def read(self, amount: int = -1) -> bytes:
        data = self.handle.read(READ_CHUNK if amount is None or amount < 0 else amount)
        self.done += len(data)
        if self.next and self.done >= self.next and self.done < self.size:
            log.info("Uploading %s: %d%% of %s", self.what, self.done * 100 // self.size, _size(self.size))
            self.next += self.size // 10
        return data


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


class _Client:
    """Requests to one acserver: the policy session, basic auth, status checks."""

    def __init__(self, config: Config, credentials: Credentials | None, host: str, timeout: float) -> None:
        self.session = session_for(config)
        self.session.timeout = timeout
        self.host = host
        self.credentials = credentials
        if credentials is not None:
            self.session.auth = (credentials.username, credentials.password)

    def request(self, method: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, url, **kwargs)
        except InsecureRequestRefused as exc:
            raise PushError(
                f"{what}: {exc}",
                hint=f"if you trust this network, add http:{urlsplit(url).netloc} to "
                "insecureOptions in config.yml",
            ) from None
        except requests.exceptions.SSLError:
            where = urlsplit(url).netloc
            raise PushError(
                f"{what}: the TLS certificate of {where} is not trusted",
                hint=f"install its CA, or add tls:{where} to insecureOptions",
            ) from None
        except requests.Timeout as exc:
            raise NetworkError(
                f"{what}: {urlsplit(url).netloc} did not answer within {self.session.timeout:.0f}s",
                details=str(exc),
                hint="raise timeout in the push target if the server is just slow",
            ) from None
        except requests.RequestException as exc:
            raise NetworkError(
                f"{what}: cannot reach {urlsplit(url).netloc}: {type(exc).__name__}", details=str(exc)
            ) from None
        if response.status_code == 401:
            raise PushError(
                f"{what}: {self.host} asks for credentials (HTTP 401)",
                hint="set username/password or authFile in the push target",
            )
        if response.status_code == 403:
            who = f"user {self.credentials.username!r}" if self.credentials else "anonymous access"
            raise PushError(
                f"{what}: {self.host} refused {who} (HTTP 403)",
                hint="check username/password or authFile of the push target",
            )
        if response.status_code >= 500:
            raise NetworkError(
                f"{what}: HTTP {response.status_code} from {url}", details=response.text[:2000]
            )
        if response.status_code not in (200, 400):
            raise PushError(f"{what}: bad HTTP status {response.status_code} from {url}")
        return response

    def close(self) -> None:
        self.session.close()


def push_appc(
    aci: Path, signature: Path | None, name: ImageName, target: Target, config: Config
) -> AppcPush:
    """Push `aci` (and its `signature`) as image `name` to the acserver of `target`."""
    manifest = read_aci_manifest(aci)
    url = initiate_url(name, manifest, target, config)
    host = urlsplit(url).netloc
    client = _Client(config, credentials_for(target, url), host, target.step_timeout)
    log.info("Pushing %s to %s%s", name, url, " with its signature" if signature else " (unsigned)")
    try:
        urls = _initiate(client, url)
        part = "manifest"
        try:
            client.request(
                "PUT", urls.manifest, "uploading the manifest", data=json.dumps(manifest).encode("utf-8")
            )
            part = "ACI"
            _upload_file(client, urls.aci, aci, "ACI")
            if signature is not None:
                part = "signature"
                _upload_file(client, urls.signature, signature, "signature")
        except PushError as exc:
            _abort(client, urls.complete, f"error uploading {part}: {exc.message}")
            raise
        answer = _json(
            client.request("POST", urls.complete, "completing the upload", json={"success": True}),
            "completing the upload",
        )
    finally:
        client.close()
    if answer.get("success") is not True:
        reason = answer.get("server_reason") or "no reason given"
        detail = answer.get("reason")
        raise PushError(
            f"{host} refused {name}: {reason}" + (f" ({detail})" if detail else ""),
            hint="the server's log may say more",
        )
    log.info("Pushed %s to %s", name, host)
    return AppcPush(url, signature is not None)


def _initiate(client: _Client, url: str) -> UploadUrls:
    answer = _json(client.request("POST", url, "starting the upload", data=b""), "starting the upload")
    missing = [k for k in UPLOAD_KEYS if not isinstance(answer.get(k), str)]
    if missing:
        raise PushError(f"starting the upload: {url} is not an acserver push endpoint (no {missing[0]})")
    return UploadUrls(
        answer["upload_manifest_url"],
        answer["upload_aci_url"],
        answer["upload_signature_url"],
        answer["completed_url"],
    )


def _json(response: requests.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PushError(
            f"{what}: the server did not answer JSON (HTTP {response.status_code})",
            details=response.text[:2000],
        )
    return data


def _upload_file(client: _Client, url: str, path: Path, what: str) -> None:
    size = path.stat().st_size
    start = time.monotonic()
    with open(path, "rb") as handle:
        response = client.request(
            "PUT",
            url,
            f"uploading the {what}",
            data=_Progress(handle, size, what),
            headers={"Content-Type": "application/octet-stream"},
        )
    if response.status_code != 200:
        raise PushError(f"uploading the {what}: HTTP {response.status_code}", details=response.text[:2000])
    log.info("Uploaded %s (%s) in %.1fs", what, _size(size), time.monotonic() - start)


def _abort(client: _Client, url: str, reason: str) -> None:
    """Tell the server that the upload failed (best effort: the original error is what counts)."""
    try:
        client.session.post(url, json={"success": False, "reason": reason})
    except requests.RequestException as exc:
        log.debug("could not abort the upload at %s: %s", url, exc)
