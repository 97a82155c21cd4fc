"""The one exception family for user-facing failures.

Every error a user can cause or fix (bad manifest, failing build script, missing tool) is a
:class:`DgrError`: a message, where it happened (file, line, key), a hint and the tail of
the output that explains it. An error renders itself (:meth:`DgrError.render`); the faces
(the CLI, the pytest plugin, `--json`) only print what it renders, and an error kept for
later (a failed build remembered by a pytest session) is stored whole and comes back as the
same class with the same fields (:meth:`DgrError.to_json`, :func:`error_from_json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIELDS = ("message", "path", "line", "key", "hint", "details")
_CLASSES: dict[str, type[DgrError]] = {}


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES[cls.__name__] = cls

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

    def render(self) -> str:
        """The error as users see it: `file:line: message (key: K) — hint`, then the lines
        of `details` (the output that explains it), each as `  | LINE`."""
        lines = [str(self)]
        if self.details:
            lines.extend(f"  | {line}" for line in self.details.rstrip("\n").splitlines())
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, and the class (`kind`): enough to make it again."""
        fields = {name: getattr(self, name) for name in FIELDS if getattr(self, name) is not None}
        return {"kind": type(self).__name__, **fields}


def error_from_json(data: dict[str, Any]) -> DgrError:
    """The error that :meth:`DgrError.to_json` described, of the same class when known."""
    cls = _CLASSES.get(str(data.get("kind")), DgrError)
    error = cls.__new__(cls)
    DgrError.__init__(error, str(data.get("message", "")), **{k: data.get(k) for k in FIELDS[1:]})
    return error


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
