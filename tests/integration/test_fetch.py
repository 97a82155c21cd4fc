"""Discovery and fetch against a real HTTP server on 127.0.0.1, with real gpg signatures.

Image names use the domain `example.test`, which `discovery.hosts` maps to the server's
port (appc names cannot hold a port). The server counts TLS handshakes and GETs, so the tests
can tell HTTPS attempts from plain HTTP ones.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dgr.build import BuildOptions
from dgr.config import Config, load_config
from dgr.discovery import DiscoveryError
from dgr.fetch import FetchError, fetch_image
from dgr.log import log
from dgr.manifest_load import load_manifest
from dgr.names import ImageName
from dgr.newer_versions import check_newer_versions
from dgr.resolve import resolve_one
from dgr.store import Store, appc_arch
from tests.support.gpg import Gpg, throwaway_gpg

pytestmark = pytest.mark.integration

ARCH = appc_arch()
TEMPLATE = "http://{server}/images/{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}"


# --- a small discovery server ------------------------------------------------------------


class Server:
    """Serves discovery pages, files and redirects; records what it was asked."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}  # path (with query) -> HTML
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.events: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def handle(self) -> None:
                try:
                    first = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    return
                if first == b"\x16":  # a TLS ClientHello: this server speaks plain HTTP only
                    server.events.append("TLS")
                    return
                super().handle()

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.events.append(f"GET {self.path}")
                if self.path in server.pages:
                    self._send(200, server.pages[self.path].encode(), "text/html")
                elif self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path in server.files:
                    self._send(200, server.files[self.path], "application/octet-stream")
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def discovery_page(self, path: str = "/", prefix: str = "example.test") -> None:
        self.pages[f"{path}?ac-discovery=1"] = (
            f'<html><head><meta name="ac-discovery" content="{prefix} '
            f'{TEMPLATE.format(server=self.address)}">'
            f'<meta name="ac-discovery-pubkeys" content="{prefix} http://{self.address}/pubkeys.gpg">'
            "</head></html>"
        )

    def gets(self) -> list[str]:
        return [e for e in self.events if e.startswith("GET")]


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join()


# --- images and signatures ---------------------------------------------------------------


def image_path(name: str, version: str, ext: str = "aci") -> str:
    return f"/images/{name}-{version}-linux-{ARCH}.{ext}"


def make_aci(
    name: str,
    version: str,
    files: dict[str, bytes] | None = None,
    extra: list[tuple[tarfile.TarInfo, bytes | None]] | None = None,
    dependencies: list[dict[str, Any]] | None = None,
) -> bytes:
    """A small valid ACI: `manifest` first, then an explicit `rootfs` directory entry."""
    manifest: dict[str, Any] = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [
            {"name": "version", "value": version},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": ARCH},
        ],
    }
    if dependencies:
        manifest["dependencies"] = dependencies
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.mtime = 0
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add(tarfile.TarInfo("manifest"), json.dumps(manifest).encode())
        root = tarfile.TarInfo("rootfs")
        root.type, root.mode = tarfile.DIRTYPE, 0o755
        add(root)
        for path, data in (files or {"etc/hello": b"hello\n"}).items():
            add(tarfile.TarInfo(f"rootfs/{path}"), data)
        for info, data in extra or []:
            add(info, data)
    return out.getvalue()


@pytest.fixture(scope="module")
def gpg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gpg]:
    with throwaway_gpg(tmp_path_factory.mktemp("gnupg")) as g:
        yield g


def publish(
    server: Server,
    name: str,
    version: str,
    aci: bytes,
    gpg: Gpg | None = None,
    signature: bytes | None = None,
) -> None:
    server.files[image_path(name, version)] = aci
    if signature is not None or gpg is not None:
        server.files[image_path(name, version, "aci.asc")] = signature or gpg.sign(aci)  # type: ignore[union-attr]


def make_config(
    tmp_path: Path,
    server: Server,
    *,
    insecure: bool = True,
    keyring: Path | None = None,
    newer_check: bool = True,
    unsigned: bool = True,
) -> Config:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    data: dict[str, Any] = {
        "storePath": str(tmp_path / "store"),
        "cachePath": str(tmp_path / "cache"),
        "discovery": {
            "hosts": {"example.test": server.address},
            "timeout": 5,
            "newerVersionCheck": newer_check,
        },
    }
    if insecure:
        data["insecureOptions"] = ["http:127.0.0.1"]
    if unsigned:
        data.setdefault("insecureOptions", []).append("image:127.0.0.1")
    if keyring is not None:
        data["sign"] = [{"domains": ["example.test"], "keyring": str(keyring)}]
    (home / "config.yml").write_text(json.dumps(data))
    return load_config(home)


def nothing_stored(config: Config) -> bool:
    return Store(config.store_path).list() == [] and not list((config.cache_path / "downloads").glob("*"))


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """caplog on dgr's logger, also after the CLI's setup() turned its propagation off."""
    monkeypatch.setattr(log, "propagate", True)
    caplog.set_level(logging.DEBUG, logger=log.name)
    return caplog


# --- the cases -----------------------------------------------------------------------------


def test_discovers_signed_image_by_name_and_version_into_the_store(
    tmp_path: Path, server: Server, gpg: Gpg
) -> None:
    server.discovery_page("/")  # only the domain has a page: the walk goes up from example.test/app
    publish(server, "example.test/app", "1.0.0", make_aci("example.test/app", "1.0.0"), gpg)
    config = make_config(tmp_path, server, keyring=gpg.keyring)

    stored = fetch_image(ImageName("example.test/app", "1.0.0"), config)

    assert str(stored.name) == "example.test/app:1.0.0"
    assert (stored.layer / "etc" / "hello").read_text() == "hello\n"
    assert stored.signature is not None
    assert Store(config.store_path).find(ImageName("example.test/app", "1.0.0")) == stored
    # HTTPS first for each prefix, plain HTTP only because 127.0.0.1 is listed as insecure.
    assert server.events[:4] == ["TLS", "GET /app?ac-discovery=1", "TLS", "GET /?ac-discovery=1"]
    assert f"GET {image_path('example.test/app', '1.0.0', 'aci.asc')}" in server.events


def test_secure_host_is_never_asked_over_plain_http(tmp_path: Path, server: Server) -> None:
    server.discovery_page("/")
    publish(server, "example.test/app", "1.0.0", make_aci("example.test/app", "1.0.0"))
    config = make_config(tmp_path, server, insecure=False)

    with pytest.raises(DiscoveryError, match="no aci endpoint for example.test/app"):
        fetch_image(ImageName("example.test/app", "1.0.0"), config)
    assert server.events == ["TLS", "TLS"]  # https for example.test/app, then example.test
    assert server.gets() == []


def test_dependency_resolved_through_discovery(tmp_path: Path, server: Server) -> None:
    server.discovery_page("/")
    publish(server, "example.test/base", "2.1", make_aci("example.test/base", "2.1", {"base": b"b\n"}))
    config = make_config(tmp_path, server)
    project = tmp_path / "repo" / "app"
    project.mkdir(parents=True)
    (project / "aci-manifest.yml").write_text("name: example.test/app:1\n")

    options = BuildOptions(config=config)
    dep = resolve_one(ImageName("example.test/base", "2.1"), load_manifest(project), options)

    assert str(dep.name) == "example.test/base:2.1"
    assert (dep.layer / "base").read_text() == "b\n"
    assert dep.image_id == Store(config.store_path).list()[0].image_id


def test_dependencies_of_a_fetched_image_are_fetched_and_their_pinned_id_checked(
    tmp_path: Path, server: Server
) -> None:
    import hashlib

    server.discovery_page("/")
    base = make_aci("example.test/base", "3", {"base": b"b\n"})
    base_id = "sha512-" + hashlib.sha512(base).hexdigest()
    publish(server, "example.test/base", "3", base)
    pin = {"imageName": "example.test/base", "labels": [{"name": "version", "value": "3"}]}
    publish(
        server,
        "example.test/app",
        "1",
        make_aci("example.test/app", "1", dependencies=[{**pin, "imageID": base_id}]),
    )
    publish(
        server,
        "example.test/bad",
        "1",
        make_aci("example.test/bad", "1", dependencies=[{**pin, "imageID": "sha512-" + "0" * 128}]),
    )
    config = make_config(tmp_path, server)
    project = tmp_path / "repo" / "user"
    project.mkdir(parents=True)
    (project / "aci-manifest.yml").write_text("name: example.test/user:1\n")

    options = BuildOptions(config=config)
    dep = resolve_one(ImageName("example.test/app", "1"), load_manifest(project), options)

    assert [(str(d.name), d.image_id) for d in dep.dependencies] == [("example.test/base:3", base_id)]
    with pytest.raises(FetchError, match="but example.test/bad pins sha512-0000"):
        fetch_image(ImageName("example.test/bad", "1"), config)
    assert sorted(str(i.name) for i in Store(config.store_path).list()) == [
        "example.test/app:1",
        "example.test/base:3",
    ]


def test_unsigned_image_is_refused_unless_its_host_is_opted_in(tmp_path: Path, server: Server) -> None:
    server.discovery_page("/")
    publish(server, "example.test/app", "1.0.0", make_aci("example.test/app", "1.0.0"))
    config = make_config(tmp_path, server, unsigned=False)
    with pytest.raises(FetchError, match="cannot be verified: no keyring for example.test") as err:
        fetch_image(ImageName("example.test/app", "1.0.0"), config)
    assert f"image:{server.address}" in (err.value.hint or "")
    assert nothing_stored(config)
    opted_in = make_config(tmp_path, server)  # image:127.0.0.1
    assert (
        str(fetch_image(ImageName("example.test/app", "1.0.0"), opted_in).name) == "example.test/app:1.0.0"
    )


def test_bad_signature_is_refused_and_nothing_stored(tmp_path: Path, server: Server, gpg: Gpg) -> None:
    server.discovery_page("/")
    aci = make_aci("example.test/app", "1.0.0")
    publish(server, "example.test/app", "1.0.0", aci, signature=gpg.sign(aci + b"tampered"))
    config = make_config(tmp_path, server, keyring=gpg.keyring)

    with pytest.raises(FetchError, match="bad signature") as err:
        fetch_image(ImageName("example.test/app", "1.0.0"), config)
    assert "BAD signature" in (err.value.details or "")
    assert nothing_stored(config)


def test_missing_signature_is_refused_when_a_keyring_is_configured(
    tmp_path: Path, server: Server, gpg: Gpg
) -> None:
    server.discovery_page("/")
    publish(server, "example.test/app", "1.0.0", make_aci("example.test/app", "1.0.0"))
    config = make_config(tmp_path, server, keyring=gpg.keyring)

    with pytest.raises(FetchError, match="no signature for example.test/app:1.0.0"):
        fetch_image(ImageName("example.test/app", "1.0.0"), config)
    assert nothing_stored(config)


def test_wrong_name_in_downloaded_manifest_is_refused(tmp_path: Path, server: Server) -> None:
    server.discovery_page("/")
    publish(server, "example.test/app", "1.0.0", make_aci("example.test/evil", "1.0.0"))
    config = make_config(tmp_path, server)

    with pytest.raises(FetchError, match="holds image 'example.test/evil', not 'example.test/app'"):
        fetch_image(ImageName("example.test/app", "1.0.0"), config)
    assert nothing_stored(config)


def test_a_download_that_is_not_an_aci_is_refused(tmp_path: Path, server: Server) -> None:
    server.discovery_page("/")
    publish(server, "example.test/app", "1.0.0", b"<html>not found, but 200</html>")
    config = make_config(tmp_path, server)

    with pytest.raises(FetchError, match="is not a valid ACI"):
        fetch_image(ImageName("example.test/app", "1.0.0"), config)
    assert nothing_stored(config)


def test_tar_with_dotdot_entry_is_refused(tmp_path: Path, server: Server) -> None:
    server.discovery_page("/")
    escape = tarfile.TarInfo("rootfs/../../../../../../../../escaped-dotdot")
    aci = make_aci("example.test/app", "1.0.0", extra=[(escape, b"pwned\n")])
    publish(server, "example.test/app", "1.0.0", aci)
    config = make_config(tmp_path, server)

    unsafe = r"example.test/app:1.0.0 from http://.*: refusing tar entry .*: it contains '..'"
    with pytest.raises(FetchError, match=unsafe):
        fetch_image(ImageName("example.test/app", "1.0.0"), config)
    assert not Path("/escaped-dotdot").exists()
    assert not list(tmp_path.rglob("escaped-dotdot"))
    assert nothing_stored(config)


def test_tar_writing_through_an_absolute_symlink_is_refused(tmp_path: Path, server: Server) -> None:
    server.discovery_page("/")
    outside = tmp_path / "outside"
    outside.mkdir()
    link = tarfile.TarInfo("rootfs/link")
    link.type, link.linkname = tarfile.SYMTYPE, str(outside)
    aci = make_aci(
        "example.test/app", "1.0.0", extra=[(link, None), (tarfile.TarInfo("rootfs/link/pwned"), b"pwned\n")]
    )
    publish(server, "example.test/app", "1.0.0", aci)
    config = make_config(tmp_path, server)

    unsafe = r"example.test/app:1.0.0 from http://.*'rootfs/link/pwned': .* outside the destination"
    with pytest.raises(FetchError, match=unsafe):
        fetch_image(ImageName("example.test/app", "1.0.0"), config)
    assert list(outside.iterdir()) == []
    assert nothing_stored(config)


def test_newer_version_in_the_store_is_reported(
    tmp_path: Path, server: Server, warnings: pytest.LogCaptureFixture
) -> None:
    server.discovery_page("/")
    for version in ("1.0.0", "1.10.0", "1.2.0"):
        publish(server, "example.test/app", version, make_aci("example.test/app", version))
    config = make_config(tmp_path, server, newer_check=False)
    for version in ("1.0.0", "1.10.0", "1.2.0"):
        fetch_image(ImageName("example.test/app", version), config)
    warnings.clear()

    check_newer_versions([ImageName("example.test/app", "1.2.0")], BuildOptions(config=config))

    messages = [r.getMessage() for r in warnings.records if r.levelno == logging.WARNING]
    assert messages == ["newer version of example.test/app available: 1.10.0 (using 1.2.0)"]


def test_newer_version_by_discovery_is_reported_before_returning(
    tmp_path: Path, server: Server, warnings: pytest.LogCaptureFixture
) -> None:
    server.discovery_page("/")
    latest = image_path("example.test/app", "1.3.0")
    server.redirects[image_path("example.test/app", "latest")] = f"http://{server.address}{latest}"
    server.files[latest] = make_aci("example.test/app", "1.3.0")
    config = make_config(tmp_path, server)
    names = [
        ImageName("example.test/app", "1.0.0"),
        ImageName("example.test/app", "1.3.0"),
        ImageName("example.test/gone", "1.0.0"),
        ImageName("example.test/app"),
    ]

    check_newer_versions(names, BuildOptions(config=config))

    messages = [r.getMessage() for r in warnings.records if r.levelno == logging.WARNING]
    assert messages == ["newer version of example.test/app available: 1.3.0 (using 1.0.0)"]
    asked = len(server.gets())
    check_newer_versions(names, BuildOptions(config=config))  # answered from the cache
    assert len(server.gets()) == asked


def test_store_list_and_rm_on_the_command_line(
    tmp_path: Path, server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dgr.cli import main

    monkeypatch.setattr(log, "handlers", list(log.handlers))  # main() installs its own handler
    monkeypatch.setattr(log, "propagate", log.propagate)
    monkeypatch.setattr(log, "level", log.level)

    server.discovery_page("/")
    for version in ("1.0.0", "1.1.0"):
        publish(server, "example.test/app", version, make_aci("example.test/app", version))
    config = make_config(tmp_path, server)
    ids = {v: fetch_image(ImageName("example.test/app", v), config).image_id for v in ("1.0.0", "1.1.0")}
    home = str(config.home)
    capsys.readouterr()

    assert main(["-H", home, "store", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "OS/ARCH", "SIZE"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["example.test/app:1.0.0"][0] == ids["1.0.0"][:23]
    assert rows["example.test/app:1.1.0"][2] == f"linux/{ARCH}"
    assert rows["example.test/app:1.1.0"][4] == "KiB"

    assert main(["-H", home, "store", "rm", "sha512-"]) == 1  # ambiguous: removes nothing
    assert len(Store(config.store_path).list()) == 2
    assert main(["-H", home, "store", "rm", ids["1.0.0"][:20]]) == 0
    assert [str(i.name) for i in Store(config.store_path).list()] == ["example.test/app:1.1.0"]
    assert main(["-H", home, "store", "rm", "example.test/app"]) == 0
    assert Store(config.store_path).list() == []
    assert main(["-H", home, "store", "rm", "example.test/app"]) == 1


def test_large_download_logs_progress_about_every_tenth(
    tmp_path: Path, server: Server, warnings: pytest.LogCaptureFixture
) -> None:
    server.discovery_page("/")
    publish(server, "example.test/big", "1", make_aci("example.test/big", "1", {"big": bytes(9 << 20)}))
    config = make_config(tmp_path, server)

    fetch_image(ImageName("example.test/big", "1"), config)

    progress = [r.getMessage() for r in warnings.records if r.getMessage().startswith("Downloading ")]
    assert 9 <= len(progress) <= 11, progress
    assert all(re.fullmatch(r"Downloading example.test/big:1: \d+% of 9.0 MiB", p) for p in progress)
