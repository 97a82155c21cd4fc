"""The one exception family for user-facing failures.

Every error a user can cause or fix (bad manifest, failing build script, missing tool) is a
:class:`DgrError`: a message, where it happened (file, line, key), a hint and the tail of
the output that explains it. An error renders itself (:meth:`DgrError.render`); the faces
(the CLI, the pytest plugin, `--json`) only print what it renders, and an error kept for
later (a failed build remembered by a pytest session) is stored whole and comes back as the
same class with the same fields (:meth:`DgrError.to_json`, :func:`error_from_json`).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
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


class HostError(DgrError):
    """The host refused a file operation: disk full, read-only, no permission..."""


# errno → (what it means, what to do). Anything else stays an OSError: a bug to report.
_HOST_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: (
        "no space left on device",
        "free some space, or move the folder (-p, targetWorkDir, storePath, cachePath)",
    ),
    errno.EDQUOT: ("disk quota exceeded", "free some space, or raise the quota"),
    errno.EROFS: (
        "read-only file system",
        "remount it read-write, or use a writable folder (-p, targetWorkDir, storePath, cachePath)",
    ),
    errno.EACCES: ("permission denied", "check the owner and mode of the folder, or run dgr as its owner"),
    errno.EPERM: ("operation not permitted", "check the folder's attributes (chattr) and owner"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n)"),
    errno.ENFILE: ("too many open files on the host", "close other programs, or raise fs.file-max"),
}


# Refusals about writing: the second file of a copy or a rename is the one written.
_WRITING = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def host_error(
    exc: OSError, doing: str = "", where: Path | None = None, folder: Path | None = None
) -> HostError | None:
    """The HostError for `exc`, or None when `exc` is not one of the host's refusals a user
    can act on. It names what dgr was `doing` and the file: `folder` when given (what is in
    it is temporary), else the file the system call names (as an absolute path), else `where`."""
    known = _HOST_ERRORS.get(exc.errno or 0)
    if known is None:
        return None
    meaning, hint = known
    message = f"{doing}: {meaning}" if doing else meaning
    named = exc.filename2 if exc.filename2 is not None and exc.errno in _WRITING else exc.filename
    if isinstance(named, bytes | int):
        named = None
    if named is not None and not Path(named).is_absolute():  # shutil.rmtree names them so
        named = None
    return HostError(message, path=folder or named or where, hint=hint)


@contextmanager
def host_errors(doing: str = "", where: Path | None = None, folder: Path | None = None) -> Iterator[None]:
    """Turn the host's refusals (ENOSPC, EROFS, EACCES...) raised in the block into one
    HostError (see :func:`host_error`); other exceptions pass unchanged."""
    try:
        yield
    except OSError as exc:
        error = host_error(exc, doing, where, folder)
        if error is None:
            raise
        raise error from None
