"""A registry token server (the distribution "token" auth) for bearer-token push tests.

docker-registry with `auth.token` answers 401 with `WWW-Authenticate: Bearer realm=...,
service=..., scope=...`; the client asks this server for a token with basic auth, then
retries with `Authorization: Bearer <token>`. The token is a JWT signed RS256 with a
throw-away key whose self-signed certificate is the registry's `rootcertbundle` (the
certificate travels in the JWT's `x5c` header). Keys and signatures come from openssl.
Runs in a thread of the test process on 127.0.0.1 (free port); `stop()` ends it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVICE = "test-registry"
ISSUER = "test-token-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    folder: Path
    username: str
    password: str
    issued: list[str] = field(default_factory=list)  # the scopes tokens were issued for
    port: int = 0
    _httpd: ThreadingHTTPServer | None = None

    @property
    def key(self) -> Path:
        return self.folder / "key.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> TokenServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
                "-days",
                "1",
                "-subj",
                "/CN=test-token-issuer",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        server = self

        class Handler(_Handler):
            state = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def registry_auth(self) -> str:
        """The `auth:` section of the registry's config.yml."""
        return (
            f"auth: {{ token: {{ realm: '{self.realm}', service: {SERVICE}, issuer: {ISSUER}, "
            f"rootcertbundle: {self.cert} }} }}"
        )

    def token(self, scopes: list[str]) -> str:
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else (scope, "", "")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        claims = {
            "iss": ISSUER,
            "sub": self.username,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
            timeout=60,
        ).stdout
        return f"{signing_input}.{_b64(signature)}"


class _Handler(BaseHTTPRequestHandler):
    state: TokenServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        expected = base64.b64encode(f"{self.state.username}:{self.state.password}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            body = b'{"details": "bad credentials"}'
            self.send_response(401)
        else:
            scopes = parse_qs(urlsplit(self.path).query).get("scope", [])
            self.state.issued.extend(scopes)
            token = self.state.token(scopes)
            body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
