"""`dgr sign`: a detached, armored gpg signature of image.aci (`image.aci.asc`).

The key is gpg's default secret key (of `GNUPGHOME`). The keyring that the `sign` section
of config.yml names for the image's domain (see docs/store.md) checks the signature right
after signing, so that an image is never signed with a key its consumers would refuse. An
entry with `disabled: true`, or no entry at all, means no signature (with a warning).
"""

from __future__ import annotations

import os
from pathlib import Path

from dgr.config import Config
from dgr.errors import DgrError
from dgr.fetch import sign_entry_for, verify_signature
from dgr.log import log
from dgr.names import ImageName
from dgr.process import require_tool, run

GPG_TIMEOUT = 120.0


def signature_path(aci: Path) -> Path:
    return aci.with_name(aci.name + ".asc")


def current_signature(aci: Path) -> Path | None:
    """The signature of `aci` when it exists and was made after the image."""
    sig = signature_path(aci)
    if sig.exists() and aci.exists() and sig.stat().st_mtime_ns >= aci.stat().st_mtime_ns:
        return sig
    return None


def sign_image(aci: Path, name: ImageName, config: Config) -> Path | None:
    """Sign `aci` for `name`'s domain; the signature's path, or None when signing is off."""
    entry = sign_entry_for(name.domain, config)
    if entry is None or entry.disabled:
        log.warning("signing is disabled for %s: no signature made", name.domain)
        return None
    gpg = require_tool("gpg", "gnupg")
    sig = signature_path(aci)
    tmp = sig.with_name(f".{sig.name}.tmp")
    try:
        result = run(
            [gpg, "--batch", "--yes", "--armor", "--detach-sign", "--output", tmp, aci],
            timeout=GPG_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise DgrError(
                f"gpg could not sign {aci.name}",
                details=result.tail(),
                hint="check GNUPGHOME and that it holds a secret key",
            )
        if entry.keyring is not None:
            verify_signature(aci, tmp, entry.keyring)
        os.replace(tmp, sig)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("Signed %s (%s)", aci, sig.name)
    return sig
