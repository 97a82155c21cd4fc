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
"""

from __future__ import annotations

import ast
import hashlib
import importlib.resources
import importlib.util
import json
import os
import shlex
import shutil
import stat
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dgr
from dgr.cache import cached_folder
from dgr.errors import DgrError, ToolError
from dgr.process import require_tool, run

# Bump when the recipe below changes in a way the input hash cannot see.
FORMAT = "1"

# Where the tree lives inside an image.
MOUNT = "/dgr"
# Every file and directory of the tree gets this mtime (the epoch), like SOURCE_DATE_EPOCH=0.
FIXED_MTIME = 0
# The bundled interpreter, relative to MOUNT/lib; its `._pth` file sits next to it.
PYTHON_DIR = "python"
# The one sys.path entry of the bundled interpreter, relative to the interpreter's folder.
MODULES_DIR = "modules"
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
# The dgr code that must be in the bundle whatever the probe saw.
DGR_REQUIRED = ("dgr/__init__.py", "dgr/templater", "dgr/attributes.py")
# Modules the templater can do without, because their importers fall back when they are
# missing: hashlib uses its built-in _sha*/_md5/_blake2 without _hashlib (OpenSSL, 4.5 MB);
# shutil does without zlib, bz2 and lzma; pickle (imported by jinja2's unused bytecode
# cache), datetime, decimal, uuid and json have pure-Python versions of their C accelerators;
# PyYAML's libyaml binding (yaml._yaml, 370 kB) is optional (the templater falls back to
# the pure SafeLoader: attribute files are small). The probe runs with these blocked, so it
# sees (and bundles) the fallbacks; leaving them out keeps the tree within its 15 MB budget
# whichever Python 3.11 builds it (Debian's links libpython statically: 6.8 MB).
EXCLUDED_MODULES = (
    "_hashlib", "_ssl", "ssl", "zlib", "_bz2", "bz2", "_lzma", "lzma",
    "_pickle", "_datetime", "_decimal", "_uuid", "_json", "yaml._yaml", "_yaml",
)  # fmt: skip
# Stdlib modules bundled even if the probe runs do not import them: codecs a template or
# an attribute file may ask for, and what printing an unexpected traceback needs.
STDLIB_EXTRA = (
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.utf_8_sig",
    "encodings.utf_16",
    "encodings.utf_32",
    "encodings.unicode_escape",
    "encodings.raw_unicode_escape",
    "encodings.base64_codec",
    "encodings.hex_codec",
    "traceback",
    "linecache",
    "tokenize",
)

BUSYBOX_PACKAGE = "busybox-static"
STRIP_PACKAGE = "binutils"
TIMEOUT = 120.0


class InternalsError(DgrError):
    """The dgr internals (busybox, prestart, bundled templater) could not be built."""


@dataclass(frozen=True)
class Interpreter:
    """The base Python interpreter the bundle is made from (the one running dgr)."""

    executable: Path
    version: str  # "3.11"
    stdlib: Path
    platstdlib: Path

    @classmethod
    def current(cls) -> Interpreter:
        base = getattr(sys, "_base_executable", None) or sys.executable
        paths = sysconfig.get_paths()
        return cls(
            executable=Path(os.path.realpath(base)),
            version=f"{sys.version_info.major}.{sys.version_info.minor}",
            stdlib=Path(paths["stdlib"]).resolve(),
            platstdlib=Path(paths["platstdlib"]).resolve(),
        )

    @property
    def name(self) -> str:
        return f"python{self.version}"


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
    recipe = [Path(__file__).resolve(), *sorted((package / "data").rglob("*"))]
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


def bundled_dgr_sources() -> list[Path]:
    """The source files of dgr that go into the bundle: :data:`DGR_REQUIRED` and the dgr
    modules they import (transitively, wherever the import statement is), sorted.

    Only these (with this module and dgr/data) key the cache, so that editing another part
    of dgr does not rebuild the internals.
    """
    root = Path(dgr.__file__).resolve().parent.parent
    todo: list[Path] = []
    for required in DGR_REQUIRED:
        path = root / required
        todo.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    found: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        for name in imported_names(path):
            if name.split(".")[0] == "dgr":
                module = root.joinpath(*name.split("."))
                todo += [module.with_suffix(".py"), module / "__init__.py"]
    return sorted(found)


def imported_names(source: Path) -> set[str]:
    """The absolute module names that `import` statements of `source` name, anywhere in it."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_bytes(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _libpython_candidates(interpreter: Interpreter) -> list[Path]:
    libdir = sysconfig.get_config_var("LIBDIR")
    name = sysconfig.get_config_var("INSTSONAME")
    if libdir and name and (Path(libdir) / name).is_file():
        return [Path(libdir) / name]
    return []


def find_busybox() -> Path:
    """The host's static busybox (package busybox-static)."""
    path = Path(os.path.realpath(require_tool("busybox", BUSYBOX_PACKAGE)))
    if shared_libraries(path):
        raise ToolError(
            f"{path} is not statically linked: it cannot run in an image",
            hint=f"apt-get install {BUSYBOX_PACKAGE}",
        )
    return path


# --------------------------------------------------------------------------------------
# Assembling the tree


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


def probe_modules(interpreter: Interpreter, regexes: Path) -> list[ProbedModule]:
    """Every module a set of representative templater runs imports, with where it lives.

    The runs (in one throwaway process of the base interpreter, without site) render a
    small project using partials, macros, templated attributes, overrides, `.cfg` files and
    trace logging, then hit the error paths (missing attribute, bad YAML, bad override), so
    that modules imported lazily on those paths are bundled too. What they compiled as
    regular expressions is recorded into `regexes` (see dgr.templater.regexes).
    """
    search_path = [str(Path(dgr.__file__).parent.parent), *_distribution_roots()]
    with tempfile.TemporaryDirectory(prefix="dgr-probe-") as tmp:
        work = Path(tmp)
        write_probe_project(work / "project")
        report = work / "modules.json"
        run(
            [
                interpreter.executable,
                "-I",
                "-S",
                "-X",
                "utf8",
                "-c",
                _PROBE,
                str(report),
                str(work),
                json.dumps(search_path),
                json.dumps(EXCLUDED_MODULES),
                json.dumps(STDLIB_EXTRA),
                str(regexes),
            ],
            timeout=TIMEOUT,
            error=InternalsError,
            what="probing the modules the templater imports",
        )
        entries = json.loads(report.read_text())
    modules = [ProbedModule(name=e["name"], origin=Path(e["origin"]), root=Path(e["root"])) for e in entries]
    if not any(m.name == "dgr.templater" for m in modules):
        raise InternalsError("the templater probe did not import dgr.templater", details=report.name)
    return modules


@dataclass(frozen=True)
class ProbedModule:
    """A module imported by a probe run: its origin file and the sys.path entry it came from."""

    name: str
    origin: Path
    root: Path

    @property
    def relative(self) -> Path:
        return self.origin.relative_to(self.root)

    @property
    def is_extension(self) -> bool:
        return self.origin.suffix == ".so"


def _distribution_roots() -> list[str]:
    roots: list[str] = []
    for module in ("jinja2", "markupsafe", "yaml"):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise InternalsError(f"{module} is not importable in dgr's environment", hint="reinstall dgr")
        root = str(Path(spec.origin).parent.parent)
        if root not in roots:
            roots.append(root)
    return roots


def install_modules(modules: Iterable[ProbedModule], dest: Path, interpreter: Interpreter) -> list[Path]:
    """Byte-compile the pure modules and copy the extension modules into `dest`.

    Third-party packages are taken whole, not just the submodules the probe imported, so
    that a template using a less common feature still finds its module; of dgr, only the
    modules the probe imported and :func:`bundled_dgr_sources`. Returns the installed extension
    modules (their shared libraries are needed too).
    """
    stdlib_roots = {interpreter.stdlib, interpreter.platstdlib, interpreter.platstdlib / "lib-dynload"}
    dgr_root = Path(dgr.__file__).parent.parent.resolve()
    sources: dict[Path, Path] = {}  # path relative to dest -> source file
    whole_packages: set[tuple[Path, Path]] = set()  # (sys.path root, package folder in it)
    for module in modules:
        sources[module.relative] = module.origin
        top = module.relative.parts[0]
        if module.root not in stdlib_roots and top != "dgr" and top != module.relative.name:
            whole_packages.add((module.root, Path(top)))
    for path in bundled_dgr_sources():
        sources[path.relative_to(dgr_root)] = path
    for root, package in sorted(whole_packages):
        for path in (root / package).rglob("*"):
            relative = path.relative_to(root)
            if path.suffix in (".py", ".so") and not {"__pycache__", "tests"} & set(relative.parts):
                if not _excluded(relative):
                    sources.setdefault(relative, path)

    extensions: list[Path] = []
    to_compile: list[tuple[str, str, str]] = []
    for relative, source in sorted(sources.items()):
        if source.suffix == ".so":
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            extensions.append(target)
        elif source.suffix == ".py":
            target = dest / relative.with_suffix(".pyc")
            target.parent.mkdir(parents=True, exist_ok=True)
            in_image = f"{MOUNT}/lib/{PYTHON_DIR}/{MODULES_DIR}/{relative.as_posix()}"
            to_compile.append((str(source), str(target), in_image))
    strip(*extensions)
    compile_modules(to_compile, interpreter)
    return extensions


def _excluded(relative: Path) -> bool:
    """Whether the module file `relative` (to its sys.path entry) is one of EXCLUDED_MODULES."""
    parts = list(relative.with_suffix("").parts)
    parts[-1] = parts[-1].split(".")[0]  # _yaml.cpython-311-x86_64-linux-gnu -> _yaml
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) in EXCLUDED_MODULES


def compile_modules(files: Sequence[tuple[str, str, str]], interpreter: Interpreter) -> None:
    """Byte-compile (source, pyc, name in tracebacks) triples, reproducibly.

    The pycs are sourceless, of the hash-based kind and never checked, so the mtimes of the
    host's sources are not recorded; docstrings and asserts are left out (as with -OO):
    smaller, and faster to load. marshal's output depends on the compiling process (it
    marks objects referenced more than once, and how often an interned string is
    referenced depends on what the process loaded), so compiling happens in a fresh
    interpreter that loads nothing else, with a fixed hash seed: the same input gives the
    same bytes.
    """
    run(
        [interpreter.executable, "-S", "-s", "-B", "-c", _COMPILE],
        env={"PYTHONHASHSEED": "0"},
        stdin=json.dumps(files).encode(),
        timeout=TIMEOUT,
        error=InternalsError,
        what="byte-compiling the templater's modules",
    )


def install_libraries(binaries: Iterable[Path], lib_dir: Path) -> str:
    """Copy the shared libraries `binaries` need (and the glibc loader) into `lib_dir`.

    Returns the loader's file name. Libraries are named by their soname, as the loader
    looks them up.
    """
    needed: dict[str, Path] = {}
    loader: Path | None = None
    for binary in binaries:
        for name, path in shared_libraries(binary).items():
            if name.startswith("ld-linux"):
                loader = path
            else:
                needed.setdefault(name, path)
    if loader is None:
        raise InternalsError("could not find the dynamic loader of the Python interpreter")
    shutil.copyfile(loader, lib_dir / loader.name)
    for name, path in sorted(needed.items()):
        shutil.copyfile(path, lib_dir / name)
        if name.startswith("libpython"):
            strip(lib_dir / name)  # pyenv-like builds keep debug info: 23 MB -> 6 MB
    return loader.name


def shared_libraries(binary: Path) -> dict[str, Path]:
    """The shared libraries `binary` loads (soname -> resolved host path), as ldd reports.

    Empty for a static binary.
    """
    result = run(["ldd", binary], check=False, timeout=TIMEOUT, error=InternalsError)
    if result.returncode != 0:
        if "not a dynamic executable" in result.output or "statically linked" in result.output:
            return {}
        raise InternalsError(f"ldd {binary} failed", details=result.tail())
    found: dict[str, Path] = {}
    for line in result.output.splitlines():
        parts = line.split()
        if "=>" in parts:
            name, target = parts[0], parts[parts.index("=>") + 1]
            if target == "not":
                raise InternalsError(f"{binary} needs {name}, which is not found on this host")
            found[name] = Path(os.path.realpath(target))
        elif parts and parts[0].startswith("/"):
            found[Path(parts[0]).name] = Path(os.path.realpath(parts[0]))
    return found


def strip(*binaries: Path) -> None:
    """Remove symbols and debug info from `binaries`, in place (deterministic)."""
    if binaries:
        tool = require_tool("strip", STRIP_PACKAGE)
        run([tool, "--strip-unneeded", *binaries], timeout=TIMEOUT, error=InternalsError)


def python_command(lib: str, loader: str, interpreter: Interpreter) -> list[str]:
    """The command starting the bundled interpreter of the tree whose `lib` folder is `lib`.

    The bundle's glibc loader runs the interpreter with the bundle's libraries only: not
    the image's (`--library-path`, and `--inhibit-cache` skips the image's ld.so.cache).
    Children of the templater (checkCmd) are not affected. `-X utf8`: files are UTF-8
    whatever the locale of the container.
    """
    python = f"{lib}/{PYTHON_DIR}/{interpreter.name}"
    return [f"{lib}/{loader}", "--inhibit-cache", "--library-path", lib, python, "-X", "utf8"]


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


def write_probe_project(project: Path) -> None:
    """A small templater project that uses most template features."""
    files = {
        "attributes/probe/probe.yml": (
            "default:\n  probe:\n    who: world\n    list: [1, 2, 3]\n    map: {a: 1, b: {c: 2}}\n"
            '  derived: "{{ probe.who }}"\n  count: "{{ 3 * 3 }}"\n'
            "override:\n  probe:\n    map: {b: {c: 20}}\n"
        ),
        "templates/macros.partial": "{% macro item(x) %}- {{ x }}{% endmacro %}\n",
        "templates/header.partial": "# rendered by dgr\n",
        "templates/etc/probe.tmpl": (
            '{% include "header.partial" %}{% import "macros.partial" as m %}'
            "hello {{ probe.who }} {{ derived }} {{ count }}\n"
            "{% for x in probe.list %}{{ m.item(x) }}\n{% endfor %}"
            "{{ probe.map | tojson }} {{ probe.missing | default('none') | upper }}\n"
        ),
        "templates/etc/probe.tmpl.cfg": 'mode: "0640"\ncheckCmd: "true"\n',
    }
    for relative, text in files.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# Runs in a fresh interpreter: compile the JSON list of [source, pyc, dfile] on stdin.
_COMPILE = r"""
import json, py_compile, sys
for source, cfile, dfile in json.load(sys.stdin):
    py_compile.compile(source, cfile=cfile, dfile=dfile, doraise=True, optimize=2,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""

# Runs in the probe process: argv = report file, work folder, then JSON lists: sys.path
# entries to add, modules to block (as if absent), modules to import in any case; then
# where to record the regular expressions the templater runs compiled.
_PROBE = r"""
import json, os, runpy, sys
report, work = sys.argv[1], sys.argv[2]
search, excluded, extra = (json.loads(a) for a in sys.argv[3:6])
regexes = sys.argv[6]
sys.path[:0] = search
for name in excluded:
    sys.modules[name] = None  # "import name" now raises ImportError, as in the bundle
project = os.path.join(work, "project")

def templater(*args, env=None):
    os.environ.pop("TEMPLATER_OVERRIDE", None)
    os.environ.update(env or {})
    target = os.path.join(work, "target")
    os.makedirs(target, exist_ok=True)
    sys.argv = ["templater", "-o", "TEMPLATER_OVERRIDE", "-t", target, *args]
    try:
        runpy.run_module("dgr.templater", run_name="__main__", alter_sys=True)
    except BaseException:
        pass

templater("-L", "trace", project, env={"TEMPLATER_OVERRIDE": '{"probe": {"who": "o"}}'})
templater("-L", "info", project, env={"TEMPLATER_OVERRIDE": "base64,eyJwcm9iZSI6IHt9fQ=="})
templater(project, env={"TEMPLATER_OVERRIDE": "{not json"})
with open(os.path.join(project, "templates", "etc", "missing.tmpl"), "w") as f:
    f.write("{{ nothing.here }}\n")
templater(project)
with open(os.path.join(project, "attributes", "probe", "bad.yml"), "w") as f:
    f.write("default: [unclosed\n")
templater(project)
templater("-L", "nonsense", project)

from dgr.templater import regexes as recorder
recorder.record(regexes)

import importlib
for name in extra:
    importlib.import_module(name)

# Modules dgr's code imports inside functions (on paths no run above took): scan the
# sources of the dgr modules loaded so far, import what they name, until nothing is new.
import ast, importlib
seen = set()
while True:
    todo = [m for n, m in list(sys.modules.items()) if n.split(".")[0] == "dgr" and n not in seen]
    if not todo:
        break
    for module in todo:
        seen.add(module.__name__)
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py"):
            continue
        with open(source, "rb") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                try:
                    importlib.import_module(name)
                except Exception:
                    pass

roots = sorted((os.path.realpath(p) for p in sys.path if os.path.isdir(p)), key=len, reverse=True)
found = []
for name, module in sorted(sys.modules.items()):
    if module is None:
        continue
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or getattr(module, "__file__", None)
    if not origin or not os.path.isfile(origin):
        continue
    origin = os.path.realpath(origin)
    root = next((r for r in roots if origin.startswith(r + os.sep)), None)
    if root is not None:
        found.append({"name": name, "origin": origin, "root": root})
with open(report, "w") as f:
    json.dump(found, f)
"""
