"""A small appc discovery server on 127.0.0.1 and hand-made ACIs, hostile ones included.

`DiscoveryServer` answers `?ac-discovery=1` for the domain `example.test` (which the dgr
configuration maps to it with `discovery.hosts`) and serves the files it is given; it counts
the GETs of each path, and a path can be made to answer a status or never answer.

`aci(name, version, entries)` builds an ACI from `(TarInfo, data)` pairs: a test decides
exactly what the archive holds, escapes and bombs included.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dgr.store import appc_arch

DOMAIN = "example.test"
Entry = tuple[tarfile.TarInfo, bytes | None]


def image_path(name: str, version: str, ext: str = "aci") -> str:
    return f"/images/{name}-{version}-linux-{appc_arch()}.{ext}"


class DiscoveryServer:
    """Discovery pages and image files for names under example.test."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}  # path -> a status to answer instead
        self.gets: Counter[str] = Counter()
        self.delay = 0.0  # seconds to wait before answering a file (parallel fetches overlap)
        self.page_failures = 0  # discovery pages answered with HTTP 503 before a good one
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                server.gets[path] += 1
                if self.path.endswith("?ac-discovery=1") and server.page_failures:
                    server.page_failures -= 1
                    self._send(503, b"busy\n", "text/plain")
                elif self.path.endswith("?ac-discovery=1"):
                    self._send(200, server.page().encode(), "text/html")
                elif path in server.status:
                    self._send(server.status[path], b"no\n", "text/plain")
                elif path in server.files:
                    time.sleep(server.delay)
                    self._send(200, server.files[path], "application/octet-stream")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, kind: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def page(self) -> str:
        template = f"http://{self.address}/images/{{name}}-{{version}}-{{os}}-{{arch}}.{{ext}}"
        return f'<html><head><meta name="ac-discovery" content="{DOMAIN} {template}"></head></html>'

    def publish(self, name: str, version: str, data: bytes) -> str:
        path = image_path(name, version)
        self.files[path] = data
        return path

    def config(self) -> str:
        """config.yml lines that send discovery of example.test here, over plain HTTP, its
        images accepted unsigned (docs/security.md)."""
        return (
            f"discovery: {{hosts: {{{DOMAIN}: '{self.address}'}}, retries: 0, timeout: 10}}\n"
            "insecureOptions: ['http:127.0.0.1', 'image:127.0.0.1']\n"
        )


@contextmanager
def discovery_server() -> Iterator[DiscoveryServer]:
    server = DiscoveryServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        server.thread.join()


def manifest(name: str, version: str, dependencies: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    found: dict[str, Any] = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [
            {"name": "version", "value": version},
            {"name": "os", "value": "linux"},
            {"name": "arch", "value": appc_arch()},
        ],
    }
    if dependencies:
        found["dependencies"] = list(dependencies)
    return found


def entry(name: str, data: bytes | None = None, **fields: Any) -> Entry:
    """A tar entry `name` (a regular file holding `data`, unless `fields` say otherwise)."""
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.mode = 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    return info, data


def aci(
    name: str,
    version: str,
    entries: Sequence[Entry] = (),
    *,
    image_manifest: dict[str, Any] | None = None,
    fmt: int = tarfile.PAX_FORMAT,
) -> bytes:
    """An ACI: `manifest` (`image_manifest` or one naming `name:version`), a `rootfs`
    directory, then `entries` (default: one file)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        body = json.dumps(image_manifest or manifest(name, version)).encode()
        for info, data in [
            entry("manifest", body),
            entry("rootfs", type=tarfile.DIRTYPE, mode=0o755),
            *(entries or [entry("rootfs/etc/hello", b"hello\n")]),
        ]:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def sparse_member(name: str, real_size: int, data: bytes = b"x" * 512) -> bytes:
    """A GNU sparse tar member (old format, type 'S'): `data` stored at offset 0 of a file
    of `real_size` bytes, the rest a hole. What a `tar --sparse` of a huge empty file holds."""

    def octal(value: int, width: int) -> bytes:
        return f"{value:0{width - 1}o}".encode() + b"\0"

    stored = len(data)
    header = bytearray(512)
    header[0:100] = name.encode().ljust(100, b"\0")
    header[100:108] = octal(0o644, 8)
    header[108:116] = octal(0, 8)
    header[116:124] = octal(0, 8)
    header[124:136] = octal(stored, 12)
    header[136:148] = octal(0, 12)
    header[156:157] = b"S"
    header[257:265] = b"ustar  \0"
    header[386:398] = octal(0, 12)  # first chunk: offset 0 ...
    header[398:410] = octal(stored, 12)  # ... of `stored` bytes
    header[482:483] = b"\0"  # no extended sparse headers
    header[483:495] = octal(real_size, 12)
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}".encode() + b"\0 "
    padding = b"\0" * (-stored % 512)
    return bytes(header) + data + padding


def aci_with_sparse_file(name: str, version: str, path: str, real_size: int) -> bytes:
    """An ACI whose rootfs holds one sparse file of `real_size` bytes (a few KB on the wire)."""
    whole = aci(name, version, [entry("rootfs/etc", type=tarfile.DIRTYPE, mode=0o755)])
    body = whole.rstrip(b"\0")
    body += b"\0" * (-len(body) % 512)
    return body + sparse_member(path, real_size) + b"\0" * 1024


def gzip_bomb(name: str, version: str, size: int) -> bytes:
    """A gzip-compressed ACI whose rootfs holds one file of `size` zero bytes: about a
    thousandth of `size` on the wire (compressed chunk by chunk: nothing that big in memory)."""
    import zlib

    head = aci(name, version, [entry("rootfs/etc", type=tarfile.DIRTYPE, mode=0o755)])
    head = head.rstrip(b"\0")
    head += b"\0" * (-len(head) % 512)
    info = tarfile.TarInfo("rootfs/zeros")
    info.size, info.mode, info.mtime = size, 0o644, 0
    head += info.tobuf(tarfile.GNU_FORMAT)
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts = [packer.compress(head)]
    chunk = bytes(1 << 20)
    for _ in range(size >> 20):
        parts.append(packer.compress(chunk))
    parts.append(packer.compress(bytes(size % (1 << 20)) + bytes(-size % 512) + bytes(1024)))
    parts.append(packer.flush())
    return b"".join(parts)
