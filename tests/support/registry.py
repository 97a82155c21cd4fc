"""A real OCI registry (Debian's docker-registry) on 127.0.0.1, for push tests.

Started on a free port with its storage and config under a test folder, optionally with
basic auth (an htpasswd bcrypt file); stopped by its PID. Its access log (one line per
request) is kept in `log`, so that tests can count what was pushed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT
    log: Path

    def catalog(self, auth: tuple[str, str] | None = None) -> list[str]:
        response = requests.get(f"http://{self.host}/v2/_catalog", timeout=10, auth=auth)
        return list(response.json().get("repositories") or []) if response.status_code == 200 else []

    def requests_matching(self, method: str, fragment: str) -> list[str]:
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if f'"{method} ' in line and fragment in line
        ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_registry(
    folder: Path, users: dict[str, str] | None = None, auth: str | None = None
) -> Iterator[Registry]:
    """docker-registry serving from `folder` (basic auth when `users` maps names to passwords;
    `auth` is another `auth:` section, e.g. a token server's)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is not installed (scripts/bootstrap installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = [
        "version: 0.1",
        f"storage: {{ filesystem: {{ rootdirectory: {folder / 'data'} }}, delete: {{ enabled: true }} }}",
        f"http: {{ addr: 127.0.0.1:{port} }}",
        "log: { level: warn, accesslog: { disabled: false } }",
    ]
    if users:
        htpasswd = folder / "htpasswd"
        lines = []
        for user, password in users.items():
            lines.append(
                subprocess.run(
                    ["htpasswd", "-Bin", user], input=password, text=True, capture_output=True, check=True
                ).stdout.strip()
            )
        htpasswd.write_text("\n".join(lines) + "\n")
        config.append(f"auth: {{ htpasswd: {{ realm: test, path: {htpasswd} }} }}")
    if auth:
        config.append(auth)
    (folder / "config.yml").write_text("\n".join(config) + "\n")
    log = folder / "registry.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(folder / "config.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"docker-registry did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", log)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
