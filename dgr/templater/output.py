"""Writing rendered templates: atomic outputs with their ``.cfg`` options, then checkCmd.

Shared by the two ways the templater runs: rendering now (``render.render_tree``) and a
prepared run, whose outputs were rendered when the image was built (``prepared``). Both
write through :func:`write_outputs`, so what lands on disk and every error message are the
same whichever way the content was made.

Imported at every container start, before anything else of the templater: the standard
modules that are already loaded when Python starts, and nothing else (no pathlib, typing,
tempfile or subprocess: each would cost more than the whole write; docs/internals.md).
Paths are plain strings, in the form ``str(pathlib.Path(...))`` gives them.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from dgr.errors import TemplateError

BUSYBOX = "/dgr/bin/busybox"


class Output:
    """A rendered template, ready to be written.

    ``source`` is the template's path (for errors, and its mode is the default mode),
    ``output`` the path to write relative to the target root, with slashes; ``uid``,
    ``gid``, ``mode`` and ``check_cmd`` come from its ``.cfg`` (None: not set).
    """

    __slots__ = ("source", "output", "content", "uid", "gid", "mode", "check_cmd")

    def __init__(
        self,
        source: str,
        output: str,
        content: str,
        uid: int | None = None,
        gid: int | None = None,
        mode: int | None = None,
        check_cmd: str | None = None,
    ) -> None:
        self.source = source
        self.output = output
        self.content = content
        self.uid = uid
        self.gid = gid
        self.mode = mode
        self.check_cmd = check_cmd


def write_outputs(
    templates_dir: str,
    target_root: str,
    outputs: Sequence[Output],
    *,
    check_shell: Sequence[str] | None = None,
    run_checks: bool = True,
    trace: Callable[[str], None] | None = None,
) -> list[str]:
    """Write each output in turn and run its checkCmd; return the written paths.

    Each output is written atomically with its ownership and mode (default: the template's
    own mode); missing directories are created with the mode of their source directory
    under templates_dir. checkCmd runs as ``check_shell + [cmd]`` (default
    :func:`default_check_shell`), unless run_checks is false. An output path that resolves
    (through symlinks) outside target_root is refused. The first failure stops: what was
    written before it stays.
    """
    written: list[str] = []
    shell = list(check_shell) if check_shell is not None else default_check_shell()
    for item in outputs:
        path = _write_output(templates_dir, target_root, item)
        written.append(path)
        if trace is not None:
            trace(f"rendered {path} (from {item.source}):\n{item.content}")
        if run_checks and item.check_cmd:
            _run_check(shell, item.check_cmd, path)
    return written


def _write_output(templates_dir: str, target_root: str, item: Output) -> str:
    root = resolve(target_root)
    dest = resolve(os.path.join(root, item.output))
    if not (root == "/" or dest == root or dest.startswith(root + "/")):
        raise _error(f"output {item.output} resolves outside {target_root}: {dest}", path=item.source)
    mode = item.mode
    try:
        if mode is None:
            mode = os.stat(item.source).st_mode & 0o7777
        _make_root(root)
        _make_dirs(templates_dir, root, item.output)
        write_atomically(dest, item.content, mode=mode, uid=item.uid, gid=item.gid)
    except OSError as exc:
        raise _error(f"cannot write {dest}: {exc.strerror or exc}", path=item.source) from None
    return dest


def resolve(path: str) -> str:
    """``str(pathlib.Path(path).resolve())``: the absolute path with symlinks resolved; a
    symlink loop is a RuntimeError, as pathlib has it."""
    resolved = os.path.realpath(path)
    try:
        os.stat(resolved)
    except OSError as exc:
        import errno

        if exc.errno == errno.ELOOP:
            raise RuntimeError(f"Symlink loop from {exc.filename!r}") from None
    return resolved


def _make_root(path: str) -> None:
    """``pathlib.Path(path).mkdir(parents=True, exist_ok=True)``, with the same errors."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent == path:
            raise
        _make_root(parent)
        try:
            os.mkdir(path)
        except OSError:
            if not _is_kind(path, stat.S_IFDIR):
                raise
    except OSError:
        if not _is_kind(path, stat.S_IFDIR):
            raise


def _is_kind(path: str, kind: int) -> bool:
    """``Path.is_dir()`` (kind S_IFDIR) or ``Path.is_file()`` (S_IFREG): false when path is
    missing, is a symlink loop or lies under a non-directory; other errors raise."""
    try:
        return stat.S_IFMT(os.stat(path).st_mode) == kind
    except OSError as exc:
        import errno

        if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            raise
        return False


def _make_dirs(templates_dir: str, root: str, output: str) -> None:
    source, target = templates_dir, root
    for part in output.split("/")[:-1]:
        source, target = os.path.join(source, part), os.path.join(target, part)
        if not _is_kind(target, stat.S_IFDIR):
            os.mkdir(target)
            os.chmod(target, os.stat(source).st_mode & 0o7777)


def write_atomically(
    path: str | os.PathLike[str], content: str, *, mode: int, uid: int | None = None, gid: int | None = None
) -> None:
    """Replace path by content, with mode and ownership set before it appears; never leaves a
    partial file. A bind-mounted file (rename fails with EBUSY, e.g. /etc/resolv.conf in a
    container) is rewritten in place instead — the content is complete before that starts."""
    import errno

    path = os.fspath(path)
    directory, name = os.path.split(path)
    fd, tmp = _create_temporary(directory or ".", f".{name}.", ".tmp")
    try:
        with open(fd, "w", encoding="utf-8") as out:
            out.write(content)
        # No fsync: outputs are regenerated at every start; rename alone keeps them whole.
        os.chmod(tmp, mode)
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        try:
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            with open(path, "w", encoding="utf-8") as out:
                out.write(content)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _create_temporary(directory: str, prefix: str, suffix: str) -> tuple[int, str]:
    """A new file `directory/prefix + random + suffix`, open for writing, mode 0600 (what
    tempfile.mkstemp does; tempfile itself costs 12 ms to import in an image)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    while True:
        path = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue


def default_check_shell() -> list[str]:
    """How checkCmd runs: ``/dgr/bin/busybox sh -c`` in a dgr image, else ``/bin/sh -c``."""
    return [BUSYBOX, "sh", "-c"] if _is_kind(BUSYBOX, stat.S_IFREG) else ["/bin/sh", "-c"]


def _run_check(shell: list[str], command: str, path: str) -> None:
    try:
        code, raw = run_command([*shell, command])
    except OSError as exc:
        raise _error(f"cannot run checkCmd with {shell[0]}: {exc.strerror}", path=path) from None
    if code != 0:
        output = raw.decode("utf-8", "replace").strip()
        tail = " | ".join(output.splitlines()[-5:])
        raise _error(
            f"checkCmd `{command}` failed (exit {code})" + (f": {tail}" if tail else ""),
            path=path,
            details=output,
        )


def run_command(argv: list[str]) -> tuple[int, bytes]:
    """Run `argv` (argv[0] an absolute path); its exit code and merged stdout/stderr.

    os.posix_spawn rather than subprocess: subprocess brings locale, selectors and
    _posixsubprocess into every image for this one call (see docs/internals.md).
    """
    read, write = os.pipe()
    try:
        actions = [
            (os.POSIX_SPAWN_DUP2, write, 1),
            (os.POSIX_SPAWN_DUP2, write, 2),
            (os.POSIX_SPAWN_CLOSE, read),
        ]
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    with open(read, "rb") as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output


def _error(message: str, *, path: str, details: str | None = None) -> TemplateError:
    # dgr.errors imports pathlib (17 ms in an image): only when something failed.
    from dgr.errors import TemplateError

    return TemplateError(message, path=path, details=details)
