"""Image names and versions: appc identifiers, `domain/path/name[:version]`, version order."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from dgr.errors import DgrError, ManifestError
from dgr.process import run

# Strict spec regexes (actool is looser; we generate and accept only these).
AC_IDENTIFIER = re.compile(r"^[a-z0-9]+([-._~/][a-z0-9]+)*$")
AC_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
# A version (the appc `version` label): what Debian, semver and dgr's own generated versions
# use. The OCI tag of an image is its version with OCI_TAG_MAP applied (docs/manifest.md).
VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+~-]{0,127}$")
# The characters of a version that an OCI tag does not take ('+' of `1.22.1-9+deb12u9`,
# '~' of `2.0~rc1`), and what they become in the tag.
OCI_TAG_MAP = str.maketrans({"+": "_", "~": "_"})


def is_ac_identifier(text: str) -> bool:
    return bool(AC_IDENTIFIER.match(text))


def is_ac_name(text: str) -> bool:
    return bool(AC_NAME.match(text))


def to_ac_name(text: str) -> str:
    """Sanitise `text` into an AC Name (rkt's app-name rule: lower case, [a-z0-9-] only)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", name) or "app"


@dataclass(frozen=True, order=True)
class ImageName:
    """`domain/path/name[:version]`, as the original's ACFullname."""

    name: str
    version: str = ""

    @classmethod
    def parse(cls, text: str, *, source: Path | str | None = None, key: str = "name") -> ImageName:
        """Parse and validate `text`; ManifestError naming `source` and `key` when invalid."""
        text = text.strip()
        name, _, version = text.partition(":")
        if ":" in version:
            raise ManifestError(f"invalid image name {text!r}: more than one ':'", path=source, key=key)
        if not name:
            raise ManifestError(f"{key} is mandatory in manifest", path=source, key=key)
        if not is_ac_identifier(name):
            raise ManifestError(
                f"invalid image name {name!r}: must be lower case alphanumerics separated by one of -._~/",
                path=source,
                key=key,
                hint="e.g. example.com/group/app:1.0",
            )
        if version and not VERSION.match(version):
            raise ManifestError(
                f"invalid version {version!r} in {text!r}: use letters, digits, '.', '_', '-', '+' "
                "and '~' (at most 128, not starting with '.', '-', '+' or '~')",
                path=source,
                key=key,
            )
        return cls(name, version)

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name

    @property
    def domain(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        """The name without its first (domain) segment."""
        return self.name.split("/", 1)[1] if "/" in self.name else self.name

    @property
    def tiny_name(self) -> str:
        """The last path segment of the name."""
        return self.name.rsplit("/", 1)[-1]

    @property
    def app_name(self) -> str:
        """The sanitised tiny name, used as the image's directory under /dgr/attributes."""
        return to_ac_name(self.tiny_name)

    def with_version(self, version: str) -> ImageName:
        return ImageName(self.name, version)


def oci_tag(version: str) -> str:
    """The OCI tag for an image `version`: `+` and `~` become `_`; no version is `latest`.

    A valid version (VERSION) gives a valid tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`): the
    first character and the length are already the tag's.
    """
    return version.translate(OCI_TAG_MAP) if version else "latest"


def generate_version(directory: Path, epoch: int | None = None) -> str:
    """`YYYYMMDD.HHMMSS` (local time, or UTC of `epoch` when given), with `-v<git short hash>`
    when `directory` is in git."""
    stamp = time.strftime("%Y%m%d.%H%M%S", time.localtime() if epoch is None else time.gmtime(epoch))
    try:
        out = run(["git", "-C", str(directory), "rev-parse", "--short", "HEAD"], timeout=10, check=False)
    except DgrError:  # no git, or it hung
        return stamp
    commit = out.output.strip()
    return f"{stamp}-v{commit}" if out.returncode == 0 and commit else stamp


def _numbers(main: str) -> list[int]:
    result = []
    for part in main.split("."):
        result.append(int(part) if part.isdigit() else 0)
    return result


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as `a` is older than, equal to or newer than `b` (the original's order).

    Split at the first `-`: the dotted numeric main parts compare numerically (missing parts
    count as 0); on a tie the version without a suffix is older; two suffixes compare as
    numbers when both are numeric, else as strings.
    """
    main_a, dash_a, suffix_a = a.partition("-")
    main_b, dash_b, suffix_b = b.partition("-")
    na, nb = _numbers(main_a), _numbers(main_b)
    width = max(len(na), len(nb))
    na += [0] * (width - len(na))
    nb += [0] * (width - len(nb))
    if na != nb:
        return -1 if na < nb else 1
    if not dash_a and not dash_b:
        return 0
    if not dash_a or not dash_b:
        return -1 if not dash_a else 1
    if suffix_a == suffix_b:
        return 0
    if suffix_a.isdigit() and suffix_b.isdigit() and int(suffix_a) != int(suffix_b):
        return -1 if int(suffix_a) < int(suffix_b) else 1
    return -1 if suffix_a < suffix_b else 1
