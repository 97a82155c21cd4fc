"""dgr's own files inside every image: what goes under `/dgr`, built once and cached.

Every image carries `/dgr/bin/{busybox,functions.sh,prestart,start,templater}` and, under
`/dgr/lib`, a private Python that runs the templater in an image that has no Python of its
own. The templater is the very same code as on the host (`dgr.templater`); what makes it fast
to start (see docs/internals.md) is that the bundle holds only what a templater run imports,
byte-compiled ahead of time, and the host's interpreter with its shared libraries and the
glibc loader, started through that loader (no patchelf, no fixed install path on the host).
The build prepares each image's templater run on top of that (`dgr.templater.prepared`);
the bundle's cache key is its identity there.

The tree is deterministic (sorted, fixed mtimes and modes, hash-based pycs that never look
at source timestamps), so two builds from the same inputs are byte-identical and an OCI
export can carry it as one shared layer. It is built once per set of inputs (dgr sources,
interpreter, library versions, busybox) into a content-keyed cache directory, under a file
lock so that parallel builds (pytest-xdist workers) build it once.

The bundle's Python modules are chosen and byte-compiled by dgr/internals_modules.py; the
interpreter, busybox and their shared libraries come from dgr/internals_binaries.py.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import os
import shlex
import shutil
import stat
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import dgr
from dgr.cache import cached_folder
from dgr.internals_binaries import (
    MODULES_DIR,
    MOUNT,
    PYTHON_DIR,
    TIMEOUT,
    InternalsError,
    Interpreter,
    find_busybox,
    install_libraries,
    python_command,
    strip,
)
from dgr.internals_modules import bundled_dgr_sources, install_modules, probe_modules, write_probe_project
from dgr.process import run

# Bump when the recipe below changes in a way the input hash cannot see.
FORMAT = "1"
# Every file and directory of the tree gets this mtime (the epoch), like SOURCE_DATE_EPOCH=0.
FIXED_MTIME = 0
# The bundle's identity, relative to MODULES_DIR (see dgr.templater.prepared.identity).
IDENTITY = "dgr/templater/identity"
# Regular expressions compiled ahead of time, relative to MODULES_DIR (dgr.templater.regexes).
REGEXES = "dgr/templater/regexes.marshal"
# How the bundled interpreter runs the templater: `python -m dgr.templater` without runpy,
# which alone costs 5 ms in an image, and without garbage collection nor the interpreter's
# teardown (see main_in_image). Same command line after it.
TEMPLATER_MAIN = ("-c", "from dgr.templater.__main__ import main_in_image; main_in_image()")
# What dgr/data/prestart says where the templater command goes.
TEMPLATER_PLACEHOLDER = "@TEMPLATER@"

# Third-party distributions the templater imports; their versions key the cache.
BUNDLED_DISTRIBUTIONS = ("Jinja2", "MarkupSafe", "PyYAML")


def default_cache_dir() -> Path:
    """dgr's cache folder: `$XDG_CACHE_HOME/dgr`, else `~/.cache/dgr`."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "dgr"


def build_internals(cache_dir: Path | None = None) -> Path:
    """The directory whose content is exactly what goes under `/dgr` in an image.

    Built on first use for the current inputs into `cache_dir/internals/<key>` (default
    cache: :func:`default_cache_dir`), then reused; concurrent callers wait for one build.
    The returned tree must be treated as read-only.
    """
    cache = (cache_dir or default_cache_dir()) / "internals"
    # Computing the key reads and parses dgr's sources and runs ldd on busybox (about
    # 40 ms): remember it under a fingerprint of the same inputs made of file stats only.
    memo = cache / "keys" / input_fingerprint()
    try:
        known = cache / memo.read_text().strip()
        if known.is_dir():
            return known
    except OSError:
        pass
    interpreter = Interpreter.current()
    busybox = find_busybox()
    key = internals_key(interpreter, busybox)

    def produce(tree: Path) -> None:
        tree.chmod(0o755)
        loader = assemble(tree, interpreter, busybox, key)
        check_bundle(tree, loader, interpreter)

    tree = cached_folder(cache / key, produce)
    memo.parent.mkdir(parents=True, exist_ok=True)
    staged = memo.with_name(f".{memo.name}.{os.getpid()}")
    staged.write_text(key + "\n")
    staged.replace(memo)
    return tree


def input_fingerprint() -> str:
    """A cheap fingerprint of the internals' inputs: path, size and mtime of dgr's sources and
    data, of the bundled distributions' files, of the interpreter and of busybox.

    Any change of an input changes it (then the real key is computed again); it is never used
    as the key itself, so a false change only costs a recomputation.
    """
    digest = hashlib.sha256(f"format={FORMAT}\0python={sys.version}\0".encode())
    package = Path(dgr.__file__).resolve().parent
    files = sorted(package.rglob("*.py")) + sorted((package / "data").rglob("*"))
    for module in ("jinja2", "markupsafe", "yaml"):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin is not None:
            files.append(Path(spec.origin))
    busybox = shutil.which("busybox")
    interpreter = getattr(sys, "_base_executable", None) or sys.executable
    files += [Path(os.path.realpath(interpreter)), *([Path(busybox)] if busybox else [])]
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:32]


def internals_digest(root: Path) -> str:
    """A content hash of the tree at `root`: equal digests mean byte-identical trees.

    Covers every path, its type, its permission bits, its content (or link target) and its
    mtime, i.e. everything a tar layer of the tree records.
    """
    digest = hashlib.sha256()
    for path in sorted_tree(root):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        digest.update(
            f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode):o}\0{st.st_mtime_ns}\0".encode()
        )
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            with path.open("rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


def internals_size(root: Path) -> int:
    """The total size in bytes of the regular files under `root`."""
    return sum(p.stat().st_size for p in sorted_tree(root) if p.is_file() and not p.is_symlink())


def internals_key(interpreter: Interpreter, busybox: Path) -> str:
    """The cache key: a hash of every input of the build (not of its output).

    dgr's own sources and data are hashed by content (small); the interpreter, its
    libraries and busybox by path, size and mtime (large, and replaced only by upgrades).
    """
    digest = hashlib.sha256()
    digest.update(f"format={FORMAT}\0python={sys.version}\0".encode())
    package = Path(dgr.__file__).resolve().parent
    # The recipe: this module, the two it builds on (internals_binaries, internals_modules)
    # and dgr/data.
    recipe = [*sorted(package.glob("internals*.py")), *sorted((package / "data").rglob("*"))]
    for path in [*recipe, *bundled_dgr_sources()]:
        if path.is_file():
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    import importlib.metadata  # only here: it costs 10 ms to import

    for dist in BUNDLED_DISTRIBUTIONS:
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            raise InternalsError(
                f"{dist} is not installed in dgr's environment",
                hint="reinstall dgr (pip install -e .) so that its dependencies are present",
            ) from None
        digest.update(f"{dist}={version}\0".encode())
    for path in (interpreter.executable, busybox, *_libpython_candidates(interpreter)):
        st = path.stat()
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()[:32]


def _libpython_candidates(interpreter: Interpreter) -> list[Path]:
    libdir = sysconfig.get_config_var("LIBDIR")
    name = sysconfig.get_config_var("INSTSONAME")
    if libdir and name and (Path(libdir) / name).is_file():
        return [Path(libdir) / name]
    return []


def assemble(tree: Path, interpreter: Interpreter, busybox: Path, identity: str) -> str:
    """Write the whole `/dgr` tree into the empty folder `tree`; return the loader's name.

    `identity` (the cache key) is stored where ``dgr.templater.prepared.identity`` finds it.
    """
    bin_dir = tree / "bin"
    lib_dir = tree / "lib"
    python_dir = lib_dir / PYTHON_DIR
    modules_dir = python_dir / MODULES_DIR
    for folder in (bin_dir, lib_dir, python_dir, modules_dir):
        folder.mkdir(parents=True)

    shutil.copyfile(busybox, bin_dir / "busybox")
    data = importlib.resources.files("dgr") / "data"
    for name in ("functions.sh", "start"):
        (bin_dir / name).write_bytes((data / name).read_bytes())

    (modules_dir / REGEXES).parent.mkdir(parents=True)
    modules = probe_modules(interpreter, modules_dir / REGEXES)
    extensions = install_modules(modules, modules_dir, interpreter)
    (modules_dir / IDENTITY).write_text(identity + "\n")

    python = python_dir / interpreter.name
    shutil.copyfile(interpreter.executable, python)
    strip(python)
    # A `._pth` file next to the executable fixes sys.path (relative to the executable),
    # and implies isolated mode without site: no PYTHON* variable, no user or site
    # packages of the image can leak in.
    (python_dir / f"{interpreter.name}._pth").write_text(f"{MODULES_DIR}\n")

    loader = install_libraries([interpreter.executable, *extensions], lib_dir)
    command = shlex.join([*python_command(f"{MOUNT}/lib", loader, interpreter), *TEMPLATER_MAIN])
    (bin_dir / "templater").write_text(templater_script(command))
    prestart = (data / "prestart").read_text().replace(TEMPLATER_PLACEHOLDER, command)
    (bin_dir / "prestart").write_text(prestart)

    normalize(tree, executables={python})
    return loader


def templater_script(command: str) -> str:
    """`/dgr/bin/templater`: the bundled interpreter on `dgr.templater`, same CLI."""
    return (
        "#!/dgr/bin/busybox sh\n"
        "# python -m dgr.templater, on dgr's own Python (see docs/internals.md)\n"
        f'exec {command} "$@"\n'
    )


def bundle_identity(tree: Path) -> str:
    """The identity of the templater bundled in the `/dgr` tree at `tree` (its cache key)."""
    return (tree / "lib" / PYTHON_DIR / MODULES_DIR / IDENTITY).read_text().strip()


def normalize(tree: Path, executables: Iterable[Path] = ()) -> None:
    """Fixed modes and mtimes everywhere, so that the tree is the same on every build.

    Directories, `bin/*`, shared objects and `executables` get 0755, other files 0644.
    """
    extra = set(executables)
    for path in sorted_tree(tree):
        if path.is_symlink():
            continue
        shared_object = path.suffix == ".so" or ".so." in path.name
        executable = path.is_dir() or path.parent == tree / "bin" or shared_object or path in extra
        path.chmod(0o755 if executable else 0o644)
    for path in sorted_tree(tree, top_down=False):
        os.utime(path, (FIXED_MTIME, FIXED_MTIME), follow_symlinks=False)
    os.utime(tree, (FIXED_MTIME, FIXED_MTIME))


def sorted_tree(root: Path, *, top_down: bool = True) -> Iterator[Path]:
    """Every path under `root` (not `root` itself), sorted; children after (or before) parents."""
    paths = sorted(root.rglob("*"), key=lambda p: p.relative_to(root).parts)
    yield from (paths if top_down else reversed(paths))


def check_bundle(tree: Path, loader: str, interpreter: Interpreter) -> None:
    """Run the bundled templater on the probe project and check what it rendered.

    It runs on the host, from the staging folder: the loader takes libraries only from
    the bundle and the interpreter finds its modules relative to itself.
    """
    with tempfile.TemporaryDirectory(prefix="dgr-check-") as tmp:
        project = Path(tmp) / "project"
        target = Path(tmp) / "target"
        write_probe_project(project)
        target.mkdir()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "TEMPLATER_OVERRIDE": '{"probe": {"who": "override"}}',
        }
        command = python_command(str(tree / "lib"), loader, interpreter)
        run(
            [*command, *TEMPLATER_MAIN, "-o", "TEMPLATER_OVERRIDE", "-t", target, project],
            env=env,
            timeout=TIMEOUT,
            error=InternalsError,
            what="the bundled templater's self-check",
        )
        rendered = (target / "etc" / "probe").read_text()
        if "hello override" not in rendered:
            raise InternalsError("the bundled templater rendered an unexpected result", details=rendered)
