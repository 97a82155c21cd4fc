"""A throw-away gpg home with one signing key, for signature tests (real gpg, no mocks)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Gpg:
    """gpg with GNUPGHOME at `home`; `keyring` holds the armored public key once generated."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = {**os.environ, "GNUPGHOME": str(home)}
        self.keyring = home.parent / "trusted.asc"

    def __call__(self, *args: str, data: bytes | None = None) -> bytes:
        return subprocess.run(
            ["gpg", "--batch", *args], env=self.env, input=data, check=True, capture_output=True, timeout=60
        ).stdout

    def sign(self, data: bytes) -> bytes:
        return self("--armor", "--detach-sign", "--output", "-", "-", data=data)


@contextmanager
def throwaway_gpg(parent: Path) -> Iterator[Gpg]:
    """A new GNUPGHOME under `parent` with an ed25519 signing key; its agent stopped at the end."""
    home = parent / "home"
    home.mkdir(mode=0o700, parents=True)
    gpg = Gpg(home)
    gpg("--passphrase", "", "--quick-gen-key", "Test <t@example.invalid>", "ed25519", "sign", "1d")
    gpg.keyring.write_bytes(gpg("--armor", "--export"))
    try:
        yield gpg
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=gpg.env, check=False, timeout=30)
