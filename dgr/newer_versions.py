"""The newer-version warning: `newer version of DEP available: X (using Y)` (issue 5, item 5).

For every dependency pinned to a version, two sources are asked for the newest version:

* the local store: every stored version of that name (for this os/arch);
* appc discovery (unless `discovery.newerVersionCheck: false`): discover the name with
  `version=latest`, GET the first image URL (following up to 10 redirects, body not read) and
  look for a version in the URLs the redirects lead to: `.../<name>-<VERSION>-<os>-<arch>.aci`
  (acserver style) or a path segment that is a version (`.../aci-debian/8.8-6/...`, Nexus style).
  A server that serves `latest` without redirecting tells nothing. Answers (also "nothing",
  also failures) are cached in `<cachePath>/newer-versions.json` for
  `discovery.newerVersionCacheSeconds` (default one hour), so rebuilds stay fast and offline
  builds do not wait on the network each time. Network failures are only logged at debug.

Discovery checks run in threads while the dependencies resolve and are always joined (with
the warnings logged) before resolution returns, unlike the original's unawaited goroutines.
Versions compare as `dgr.names.compare_versions` (reference §3.6).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from dgr.config import Config
from dgr.discovery import PolicySession, default_labels, discover, discovery_settings, host_policy
from dgr.log import log
from dgr.names import VERSION, ImageName, compare_versions
from dgr.store import Store, appc_arch

if TYPE_CHECKING:
    from dgr.options import BuildOptions

CHECK_TIMEOUT = 5.0  # seconds per request: a warning is not worth a long wait
MAX_WORKERS = 8
CACHE_FILE = "newer-versions.json"
_VERSION_SEGMENT = re.compile(r"^\d+(\.\d+){0,2}(-[.\-\dA-Za-z]+)?$")


def version_in_url(url: str, name: ImageName, os_: str, arch: str) -> str | None:
    """The version a download URL names, or None (see the module docstring for the shapes)."""
    path = unquote(urlsplit(url).path)
    file = path.rsplit("/", 1)[-1]
    tail = f"-{os_}-{arch}.aci"
    head = f"{name.tiny_name}-"
    if file.startswith(head) and file.endswith(tail):
        version = file[len(head) : -len(tail)]
        if VERSION.match(version) and version != "latest":
            return version
    for segment in path.split("/"):
        if _VERSION_SEGMENT.match(segment):
            return segment
    return None


def latest_by_discovery(name: ImageName, config: Config) -> str | None:
    """The version that `name:latest` redirects to by discovery, or None."""
    os_, arch = "linux", appc_arch()
    timeout = min(discovery_settings(config).timeout, CHECK_TIMEOUT)
    with PolicySession(host_policy(config), timeout) as session:
        endpoints = discover(name.name, default_labels("latest", os_, arch), config, session=session)
        with session.get(endpoints.acis[0].aci, stream=True) as response:
            hops = [r.url for r in response.history[1:]] + ([response.url] if response.history else [])
    for url in hops:
        version = version_in_url(url, name, os_, arch)
        if version:
            return version
    return None


def latest_in_store(name: ImageName, store: Store) -> str | None:
    """The newest stored version of `name` for this os/arch, or None."""
    arch = appc_arch()
    versions = [
        image.name.version
        for image in store.list()
        if image.name.name == name.name
        and image.os in ("", "linux")
        and image.arch in ("", arch)
        and image.name.version
    ]
    return _newest(versions)


def _newest(versions: Iterable[str | None]) -> str | None:
    best: str | None = None
    for version in versions:
        if version and (best is None or compare_versions(version, best) > 0):
            best = version
    return best


class _Cache:
    """`name os arch` → (checked at, version or "") in one JSON file, replaced atomically."""

    def __init__(self, path: Path, ttl: float) -> None:
        self.path = path
        self.ttl = ttl

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> tuple[bool, str | None]:
        if self.ttl <= 0:
            return False, None
        entry = self._load().get(key)
        if isinstance(entry, list) and len(entry) == 2 and time.time() - float(entry[0]) < self.ttl:
            return True, str(entry[1]) or None
        return False, None

    def put(self, answers: dict[str, str | None]) -> None:
        if self.ttl <= 0 or not answers:
            return
        data = self._load()
        now = time.time()
        data.update({key: [now, version or ""] for key, version in answers.items()})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".newer-", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.debug("cannot write %s: %s", self.path, exc)


def _ask_discovery(name: ImageName, config: Config) -> str | None:
    try:
        return latest_by_discovery(name, config)
    except Exception as exc:  # a warning must never break the build
        log.debug("newer-version check of %s by discovery: %s", name.name, exc)
        return None


@contextmanager
def newer_version_checks(names: Iterable[ImageName], config: Config) -> Iterator[None]:
    """Start the discovery checks of `names`, run the block, then join them and warn.

    The warnings are logged before the block's caller goes on; when the block fails, the
    checks are cancelled or awaited and nothing is logged.
    """
    pinned = sorted({n for n in names if n.version and n.version != "latest"})
    if not pinned:
        yield
        return
    settings = discovery_settings(config)
    cache = _Cache(config.cache_path / CACHE_FILE, settings.newer_version_cache_seconds)
    arch = appc_arch()
    known: dict[ImageName, str | None] = {}
    pending: dict[ImageName, Future[str | None]] = {}
    pool: ThreadPoolExecutor | None = None
    if settings.newer_version_check:
        for name in pinned:
            hit, version = cache.get(f"{name.name} linux {arch}")
            if hit:
                known[name] = version
            else:
                pool = pool or ThreadPoolExecutor(min(MAX_WORKERS, len(pinned)), "dgr-newer")
                pending[name] = pool.submit(_ask_discovery, name, config)
    try:
        yield
    except BaseException:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        raise
    if pool is not None:
        pool.shutdown(wait=True)  # joined: every answer is in before we warn
        answers = {name: future.result() for name, future in pending.items()}
        cache.put({f"{name.name} linux {arch}": v for name, v in answers.items()})
        known.update(answers)
    store = Store(config.store_path)
    for name in pinned:
        newest = _newest([known.get(name), latest_in_store(name, store)])
        if newest is not None and compare_versions(newest, name.version) > 0:
            log.warning("newer version of %s available: %s (using %s)", name.name, newest, name.version)


def check_newer_versions(names: Iterable[ImageName], options: BuildOptions) -> None:
    """Warn about each of `names` (with a version) that has a newer version; returns when done."""
    with newer_version_checks(names, options.config):
        pass
