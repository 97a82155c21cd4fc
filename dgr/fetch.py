"""Fetching images found by appc discovery into the local store, verified (SPEC §9, §11).

`fetch_image(name, config)`: discover the image's endpoints, download the ACI (and its
`.aci.asc`) into a temporary folder, then, before anything reaches the store:

1. when the `sign` configuration gives a keyring for the image's domain, check the signature
   with `gpgv` (missing or bad signature: error);
2. check that the image manifest names the requested image (and version, os, arch);
3. fetch its own dependencies the same way, checking pinned image IDs;
4. add it to the store, which computes the image ID and extracts the layer safely.

The `sign` section of config.yml (shared with signing; docs/store.md)::

    sign:
      - domains: [example.com, aci.example.org]   # exact image domains
        keyring: ~/.config/dgr/example.gpg        # public keyring (binary or armored export)
      - domains: [lab.example.net]
        disabled: true                            # never sign / verify these
      - keyring: ~/.config/dgr/any.gpg            # no domains: every other domain
"""

from __future__ import annotations

import hashlib
import re
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from filelock import FileLock

from dgr.aci import read_aci_manifest
from dgr.config import Config
from dgr.discovery import (
    AciEndpoint,
    DiscoveryError,
    InsecureRequestRefused,
    PolicySession,
    default_labels,
    discover,
    discovery_settings,
    host_policy,
)
from dgr.errors import DgrError, HostError
from dgr.leftovers import temporary_dir
from dgr.limits import Limits, limits
from dgr.log import log, step
from dgr.names import ImageName
from dgr.process import require_tool, run
from dgr.store import Store, StoredImage, appc_arch, image_id_of, labels

CHUNK = 1 << 20
PROGRESS_MIN_BYTES = 8 << 20  # smaller downloads log one line, not a progress series
UNKNOWN_SIZE_STEP = 64 << 20  # without Content-Length: one line per 64 MiB
GPGV_TIMEOUT = 120.0
RETRY_DELAY = 1.0  # before the first retry of a download; then doubled
MAX_RETRY_DELAY = 30.0
IMAGE_ID = re.compile(r"^sha512-[0-9a-f]{32,128}$")


class FetchError(DgrError):
    """A discovered image could not be downloaded or did not pass verification."""


class NetworkFetchError(FetchError):
    """A download failed on the network (unreachable, timed out, HTTP 5xx): worth another try."""


# --- signature configuration -----------------------------------------------------------


@dataclass(frozen=True)
class SignEntry:
    """One entry of the `sign` section."""

    domains: tuple[str, ...] = ()
    keyring: Path | None = None
    disabled: bool = False


def sign_entries(config: Config) -> list[SignEntry]:
    """The `sign` section, checked; relative keyring paths are relative to the config folder."""
    raw = config.section("sign") or []
    where = config.home / "config.yml"
    if not isinstance(raw, list):
        raise DgrError("sign must be a list of {domains, keyring, disabled}", path=where, key="sign")
    entries = []
    for i, item in enumerate(raw):
        key = f"sign[{i}]"
        if not isinstance(item, dict):
            raise DgrError(f"{key} must be a mapping", path=where, key=key)
        unknown = set(item) - {"domains", "keyring", "disabled"}
        if unknown:
            raise DgrError(
                f"unknown key {sorted(unknown)[0]!r} in {key}",
                path=where,
                key=key,
                hint="known keys: disabled, domains, keyring",
            )
        domains = item.get("domains") or []
        if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
            raise DgrError(f"{key}.domains must be a list of domains", path=where, key=f"{key}.domains")
        disabled = item.get("disabled", False)
        if not isinstance(disabled, bool):
            raise DgrError(f"{key}.disabled must be true or false", path=where, key=f"{key}.disabled")
        keyring = item.get("keyring")
        if not disabled and not isinstance(keyring, str):
            raise DgrError(f"{key} needs a keyring (or disabled: true)", path=where, key=f"{key}.keyring")
        path = None
        if isinstance(keyring, str):
            path = Path(keyring).expanduser()
            path = path if path.is_absolute() else config.home / path
        entries.append(SignEntry(tuple(d.lower() for d in domains), path, disabled))
    return entries


def sign_entry_for(domain: str, config: Config) -> SignEntry | None:
    """The first entry listing `domain`, else the first entry without domains, else None."""
    entries = sign_entries(config)
    for entry in entries:
        if domain.lower() in entry.domains:
            return entry
    return next((e for e in entries if not e.domains), None)


def verify_signature(aci: Path, signature: Path, keyring: Path) -> None:
    """Check the detached signature of `aci` against `keyring` with gpgv; FetchError if bad."""
    if not keyring.is_file():
        raise FetchError(
            f"keyring {keyring} does not exist",
            path=keyring,
            hint="fix the keyring path of the sign section in config.yml",
        )
    gpgv = require_tool("gpgv")
    with temporary_dir(None, "dgr-gpgv-") as home:
        ring = keyring
        if keyring.read_bytes()[:32].lstrip().startswith(b"-----BEGIN PGP"):
            # gpgv reads binary keyrings only; gpg converts an armored export.
            ring = Path(home) / "keyring.gpg"
            run(
                [require_tool("gpg"), "--batch", "--homedir", home, "--dearmor", "--output", ring, keyring],
                timeout=GPGV_TIMEOUT,
                error=FetchError,
                what=f"reading keyring {keyring}",
            )
        result = run(
            [gpgv, "--homedir", home, "--keyring", ring.absolute(), signature, aci],
            check=False,
            timeout=GPGV_TIMEOUT,
        )
    if result.returncode != 0:
        raise FetchError(
            f"bad signature for {aci.name}: gpgv refused it",
            path=keyring,
            details=result.tail(),
            hint="the image is not signed by a key of this keyring",
        )
    log.debug("signature of %s verified with %s", aci.name, keyring)


# --- download ------------------------------------------------------------------------------


def download(session: requests.Session, url: str, dest: Path, what: str) -> int:
    """Stream `url` into `dest` (progress at info about every 10%); returns the byte count."""
    start = time.monotonic()
    try:
        with session.get(url, stream=True) as response:
            if response.status_code >= 500:
                raise NetworkFetchError(f"downloading {what}: HTTP {response.status_code} from {url}")
            if response.status_code != 200:
                raise FetchError(f"downloading {what}: HTTP {response.status_code} from {url}")
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            next_report = _next_report(0, total)
            with open(dest, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if next_report and done >= next_report:
                        _report(what, done, total)
                        next_report = _next_report(done, total)
    except InsecureRequestRefused as exc:
        raise FetchError(
            f"downloading {what}: {exc}", hint="add http:HOST to insecureOptions if you trust this network"
        ) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise NetworkFetchError(f"downloading {what} from {url} failed: {exc}") from None
    except requests.RequestException as exc:
        raise FetchError(f"downloading {what} from {url} failed: {exc}") from None
    log.info("Downloaded %s (%s) in %.1fs", what, _size(done), time.monotonic() - start)
    return done


def _next_report(done: int, total: int) -> int:
    if total and total >= PROGRESS_MIN_BYTES:
        tenth = total // 10
        return (done // tenth + 1) * tenth if done < total else 0
    if not total:
        return (done // UNKNOWN_SIZE_STEP + 1) * UNKNOWN_SIZE_STEP
    return 0


def _report(what: str, done: int, total: int) -> None:
    if total:
        log.info("Downloading %s: %d%% of %s", what, done * 100 // total, _size(total))
    else:
        log.info("Downloading %s: %s so far", what, _size(done))


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


# --- verification --------------------------------------------------------------------------


def read_manifest(aci: Path, source: str) -> dict[str, Any]:
    """The image manifest of a downloaded ACI (nothing extracted); FetchError naming `source`
    if unreadable."""
    try:
        return read_aci_manifest(aci)
    except DgrError as exc:
        raise FetchError(f"{source} is not a valid ACI: {exc.message}") from None


def downloaded_image_id(aci: Path, source: str) -> str:
    """The image ID of a downloaded ACI; FetchError naming `source` when it is corrupt (a
    truncated gzip stream...)."""
    try:
        return image_id_of(aci)
    except (OSError, EOFError, zlib.error) as exc:
        raise FetchError(f"{source} is corrupt: {exc}", hint="download it again; check the server") from None


def check_manifest(
    manifest: Mapping[str, Any], name: ImageName, wanted: Mapping[str, str], url: str
) -> None:
    """The downloaded image must be the one asked for (appc §4: name and every label)."""
    if manifest.get("acKind") != "ImageManifest":
        raise FetchError(f"{url}: not an image manifest (acKind {manifest.get('acKind')!r})")
    if manifest.get("name") != name.name:
        raise FetchError(
            f"{url} holds image {manifest.get('name')!r}, not {name.name!r}",
            hint="the discovery server answers with the wrong image",
        )
    have = labels(dict(manifest))
    for key, value in wanted.items():
        if key == "version" and value == "latest":
            continue
        if key in have and have[key] != value:
            raise FetchError(f"{url} holds {name.name} with {key}={have[key]}, not {key}={value}")
    if name.version and name.version != "latest" and "version" not in have:
        raise FetchError(f"{url} holds {name.name} without a version label, not version {name.version}")


# --- fetch ---------------------------------------------------------------------------------


def fetch_image(
    name: ImageName, config: Config, *, store: Store | None = None, _parents: tuple[str, ...] = ()
) -> StoredImage:
    """Discover, download, verify and store `name` (and its dependencies); the stored image.

    DiscoveryError when discovery finds no endpoint; FetchError for everything after that.
    """
    store = store or Store(config.store_path)
    expansion = limits(config)  # a bad limits section fails before any download
    downloads = config.cache_path / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    # One download per image: a second dgr fetching it meanwhile waits, then finds it stored.
    locks = config.cache_path / "locks"
    locks.mkdir(exist_ok=True)
    with FileLock(str(locks / f"fetch-{hashlib.sha256(str(name).encode()).hexdigest()[:24]}")):
        found = store.find(name)
        if found is not None:
            log.info("%s was fetched meanwhile (%s)", found.name, found.image_id[:19])
            return found
        return _fetch_image(name, config, store, downloads, expansion, _parents)


def _fetch_image(
    name: ImageName,
    config: Config,
    store: Store,
    downloads: Path,
    expansion: Limits,
    parents: tuple[str, ...],
) -> StoredImage:
    wanted = default_labels(name.version, "linux", appc_arch())
    settings = discovery_settings(config)
    policy = host_policy(config)
    session = PolicySession(policy, settings.timeout)
    with session:
        endpoints = discover(name.name, wanted, config, session=session)
        entry = sign_entry_for(name.domain, config)
        keyring = entry.keyring if entry is not None and not entry.disabled else None
        if keyring is None:
            log.info("No keyring configured for %s: the signature of %s is not checked", name.domain, name)
        with step(f"Fetching {name}"), temporary_dir(downloads, "fetch-") as tmp:
            aci, asc = tmp / "image.aci", tmp / "image.aci.asc"
            endpoint = _download_first(session, endpoints.acis, aci, str(name), settings.retries)
            signature = None
            if keyring is None and not policy.allows("image", endpoint.aci):
                host = urlsplit(endpoint.aci).netloc
                raise FetchError(
                    f"{name} from {endpoint.aci} cannot be verified: no keyring for {name.domain}",
                    hint=f"configure a keyring for {name.domain} in `sign` (config.yml), or accept "
                    f"unsigned images from this host with image:{host} in insecureOptions",
                )
            if keyring is not None:
                try:
                    download(session, endpoint.asc, asc, f"{name} signature")
                except FetchError as exc:
                    raise FetchError(
                        f"no signature for {name}: {exc.message}",
                        path=keyring,
                        hint=f"a keyring is configured for {name.domain}, so images must be signed",
                    ) from None
                verify_signature(aci, asc, keyring)
                signature = asc
            source = f"{name} from {endpoint.aci}"
            manifest = read_manifest(aci, source)
            check_manifest(manifest, name, wanted, endpoint.aci)
            image_id = downloaded_image_id(aci, source)
            _fetch_dependencies(manifest, store, config, (*parents, name.name))
            try:
                stored = store.add(aci, signature=signature, image_id=image_id, limits=expansion)
            except DgrError as exc:  # e.g. an entry escaping the layer: name the image, not a temp file
                path = exc.path if isinstance(exc, HostError) else None  # the store's folder
                raise FetchError(
                    f"{source}: {exc.message}", path=path, key=exc.key, details=exc.details, hint=exc.hint
                ) from None
    log.info("Fetched %s (%s)", stored.name, stored.image_id[:19])
    return stored


def fetch_if_discoverable(name: ImageName, config: Config, store: Store) -> StoredImage | None:
    """`fetch_image`, or None when discovery finds nothing for `name` (resolution step 3)."""
    try:
        return fetch_image(name, config, store=store)
    except DiscoveryError as exc:
        log.debug("%s", exc)
        return None


def _download_first(
    session: requests.Session, endpoints: tuple[AciEndpoint, ...], dest: Path, what: str, retries: int
) -> AciEndpoint:
    """Download from the first endpoint that answers (each tried again `retries` times after
    a network failure, 1, 2, 4... seconds apart); the error of the last one otherwise."""
    error: FetchError | None = None
    for endpoint in endpoints:
        for attempt in range(retries + 1):
            try:
                download(session, endpoint.aci, dest, what)
                return endpoint
            except NetworkFetchError as exc:
                error = exc
                if attempt == retries:
                    if retries:
                        exc.message += f" (after {retries + 1} attempts)"
                    break
                delay = min(RETRY_DELAY * 2**attempt, MAX_RETRY_DELAY)
                log.warning("%s; trying again in %.0fs (%d/%d)", exc.message, delay, attempt + 1, retries)
                time.sleep(delay)
            except FetchError as exc:
                log.debug("%s", exc)
                error = exc
                break
    assert error is not None
    raise error


def _fetch_dependencies(
    manifest: Mapping[str, Any], store: Store, config: Config, parents: tuple[str, ...]
) -> None:
    """Make sure every dependency of a fetched image is in the store (pinned IDs checked)."""
    for dep in manifest.get("dependencies") or []:
        dep_name = str(dep.get("imageName", ""))
        version = next(
            (str(lab.get("value")) for lab in dep.get("labels") or [] if lab.get("name") == "version"), ""
        )
        pinned = dep.get("imageID")
        if pinned and not IMAGE_ID.match(str(pinned)):
            raise FetchError(f"{parents[-1]}: invalid imageID {str(pinned)[:40]!r} for {dep_name}")
        if pinned and (store.images / str(pinned)).is_dir():
            continue
        wanted = ImageName(dep_name, version)
        if dep_name in parents:
            raise FetchError(f"dependency cycle: {' -> '.join((*parents, dep_name))}")
        found = store.find(wanted) if not pinned else None
        if found is None:
            found = fetch_image(wanted, config, store=store, _parents=parents)
        if pinned and found.image_id != pinned:
            raise FetchError(
                f"dependency {wanted} has image ID {found.image_id[:19]}..., "
                f"but {parents[-1]} pins {str(pinned)[:19]}...",
                hint="the server holds another build of that version",
            )
