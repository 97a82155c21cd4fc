"""A test peer for `dgr push` to appc: the acserver push protocol (reference/appc.md §6).

There is no packaged acserver (nor acpush, nor rkt) in Debian, so the tests push, over real
HTTP on 127.0.0.1, to this small server written from the protocol description:

- `GET /?ac-discovery=1` (and `GET /`): a page with the `ac-discovery` and
  `ac-push-discovery` meta tags for `server_name`. Unlike acserver, whose push template
  is `<scheme>://{name}-{version}-{os}-{arch}.{ext}/startupload` (usable only on port 80 with
  DNS for the image's domain), the template points at this server's real address.
  Other paths answer 404, so discovery walks up to `/` as it does with acserver.
- `POST .../startupload` → JSON with `upload_{manifest,signature,aci}_url`, `completed_url`
  (upload ids count from 1); `PUT /manifest/N`, `PUT /aci/N`, `PUT /signature/N` store the
  raw bodies; `POST /complete/N` with `{"success": true}` checks that the manifest and the
  ACI (and the signature unless `unsigned`) were uploaded, reads name and labels from the
  ACI's manifest, and stores `<root>/<prefix>/<last>/<last>-<version>-<os>-<arch>.aci`
  (+ `.aci.asc`). Failures answer HTTP 200 with `{"success": false, "reason", "server_reason"}`;
  a body that is not JSON gets 400; an unknown N gets 404 (500 for a manifest PUT).
- Basic auth on every push endpoint when `username` is set: no header → 401, a wrong
  user/password → 403.

It runs in a thread of the test process (stdlib `http.server`, a free port); `stop()` ends it.
"""

from __future__ import annotations

import base64
import json
import re
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

NAME = re.compile(r"^([a-z0-9_\-.]+(?:/[a-z0-9_\-.]+)*)/([a-z0-9_-]+)$")


@dataclass
class Upload:
    manifest: bytes | None = None
    aci: bytes | None = None
    signature: bytes | None = None


@dataclass
class AcServer:
    """The server's state: what it received and what it stored."""

    root: Path
    server_name: str = "acserver.test"
    username: str = ""
    password: str = ""
    unsigned: bool = True
    uploads: dict[int, Upload] = field(default_factory=dict)
    completions: list[dict[str, Any]] = field(default_factory=list)  # every body POSTed to complete
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    port: int = 0
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AcServer:
        server = self

        class Handler(_Handler):
            state = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def stored(self, name: str, version: str, os_: str = "linux", arch: str = "amd64") -> Path:
        prefix, last = NAME.match(name).groups()  # type: ignore[union-attr]
        return self.root / prefix / last / f"{last}-{version}-{os_}-{arch}.aci"

    # --- protocol ---------------------------------------------------------------------------

    def start_upload(self) -> dict[str, Any]:
        with self._lock:
            number = len(self.uploads) + 1
            self.uploads[number] = Upload()
        p = self.url
        return {
            "aci_push_version": "0.0.1",
            "multipart": False,
            "upload_manifest_url": f"{p}/manifest/{number}",
            "upload_signature_url": f"{p}/signature/{number}",
            "upload_aci_url": f"{p}/aci/{number}",
            "completed_url": f"{p}/complete/{number}",
        }

    def complete(self, number: int, body: dict[str, Any]) -> dict[str, Any]:
        upload = self.uploads.pop(number)
        self.completions.append(body)

        def failed(server_reason: str, reason: str = "") -> dict[str, Any]:
            return {"success": False, "reason": reason, "server_reason": server_reason}

        if not body.get("success"):
            return failed("client reported failure", str(body.get("reason", "")))
        if upload.manifest is None:
            return failed("manifest wasn't uploaded")
        if upload.signature is None and not self.unsigned:
            return failed("signature wasn't uploaded")
        if upload.aci is None:
            return failed("ACI wasn't uploaded")
        aci_path = self.root / "tmp" / str(number)
        aci_path.parent.mkdir(parents=True, exist_ok=True)
        aci_path.write_bytes(upload.aci)
        try:
            manifest = _read_manifest(aci_path)
        except (tarfile.TarError, ValueError, KeyError) as exc:
            return failed("Internal Server Error", f"cannot read the ACI manifest: {exc}")
        finally:
            aci_path.unlink()
        labels = {item["name"]: item["value"] for item in manifest.get("labels", [])}
        for label in ("version", "os", "arch"):
            if label not in labels:
                return failed("Internal Server Error", f"{label} not found in aci manifest")
        dest = self.stored(manifest["name"], labels["version"], labels["os"], labels["arch"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(upload.aci)
        if upload.signature is not None:
            dest.with_name(dest.name + ".asc").write_bytes(upload.signature)
        return {"success": True}

    def discovery_page(self) -> str:
        s = self.server_name
        return (
            "<html><head>"
            f'<meta name="ac-discovery" content="{s} {self.url}/find?name={{name}}&version={{version}}'
            '&os={os}&arch={arch}&ext={ext}">'
            f'<meta name="ac-push-discovery" content="{s} {self.url}/{{name}}-{{version}}-{{os}}-{{arch}}'
            '.{ext}/startupload">'
            "</head><body>test acserver</body></html>"
        )


def _read_manifest(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if member.name.removeprefix("./") == "manifest" and member.isreg():
                handle = archive.extractfile(member)
                assert handle is not None
                data: dict[str, Any] = json.loads(handle.read())
                return data
    raise KeyError("manifest")


class _Handler(BaseHTTPRequestHandler):
    state: AcServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, data: dict[str, Any]) -> None:
        self._send(200, json.dumps(data).encode(), "application/json")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        state = self.state
        if not state.username:
            return True
        header = self.headers.get("Authorization")
        if not header:
            self._send(401, b"No authorization provided")
            return False
        expected = base64.b64encode(f"{state.username}:{state.password}".encode()).decode()
        if header != f"Basic {expected}":
            self._send(403, b"Incorrect username/password basic auth provided")
            return False
        return True

    def do_GET(self) -> None:
        self.state.requests.append(("GET", self.path))
        if self.path.split("?")[0] == "/":
            self._send(200, self.state.discovery_page().encode(), "text/html")
        else:
            self._send(404, b"404 page not found")

    def do_POST(self) -> None:
        self.state.requests.append(("POST", self.path))
        path = self.path.split("?")[0]
        body = self._body()
        if path.endswith("/startupload"):
            if self._authorized():
                self._json(self.state.start_upload())
            return
        match = re.fullmatch(r"/complete/(\d+)", path)
        if match is None:
            self._send(404, b"404 page not found")
            return
        if not self._authorized():
            return
        number = int(match.group(1))
        if number not in self.state.uploads:
            self._send(404, b"404 page not found")
            return
        try:
            data = json.loads(body)
        except ValueError:
            self._send(400)
            return
        self._json(self.state.complete(number, data))

    def do_PUT(self) -> None:
        self.state.requests.append(("PUT", self.path))
        match = re.fullmatch(r"/(manifest|aci|signature)/(\d+)", self.path.split("?")[0])
        body = self._body()
        if match is None:
            self._send(404, b"404 page not found")
            return
        if not self._authorized():
            return
        upload = self.state.uploads.get(int(match.group(2)))
        if upload is None:
            self._send(500 if match.group(1) == "manifest" else 404)
            return
        setattr(upload, match.group(1), body)
        self._send(200)
