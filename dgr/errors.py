"""The one exception family for user-facing failures.

Every error a user can cause or fix (bad manifest, failing build script, missing tool) is a
:class:`DgrError`: a message, where it happened (file, line, key) and a hint. The CLI prints
it as one block and exits 1; the pytest plugin shows it without a traceback of our internals.
"""

from __future__ import annotations

from pathlib import Path


class DgrError(Exception):
    """A failure the user can understand and act on."""

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        self.key = key
        self.hint = hint
        self.details = details

    def location(self) -> str:
        """`file:line` (or just the file), or an empty string."""
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line is not None else self.path

    def __str__(self) -> str:
        parts = []
        loc = self.location()
        if loc:
            parts.append(f"{loc}: ")
        parts.append(self.message)
        if self.key:
            parts.append(f" (key: {self.key})")
        if self.hint:
            parts.append(f" — {self.hint}")
        return "".join(parts)


class UsageError(DgrError):
    """Bad command-line usage (exit code 2)."""


class ManifestError(DgrError):
    """An invalid aci-manifest.yml or pod-manifest.yml."""


class BuildError(DgrError):
    """A build step failed; `details` holds the tail of its output."""


class TemplateError(DgrError):
    """A template or attribute could not be rendered."""


class AttributesError(DgrError):
    """An attribute file or override is invalid."""


class ToolError(DgrError):
    """A host tool (bwrap, skopeo, gpg...) is missing or failed."""


class ContainerError(DgrError):
    """A container could not be started or failed while running."""
