"""The Python modules of the bundled templater: found by probe runs, byte-compiled reproducibly.

Only what templater runs import goes into the bundle (with the fallbacks of the modules it
does without): a throwaway interpreter runs the templater on a probe project and reports
every module it loaded; of dgr, the modules the templater imports (see dgr/internals.py).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dgr
from dgr.internals_binaries import (
    MODULES_DIR,
    MOUNT,
    PYTHON_DIR,
    TIMEOUT,
    InternalsError,
    Interpreter,
    strip,
)
from dgr.process import run

# The dgr code that must be in the bundle whatever the probe saw.
DGR_REQUIRED = ("dgr/__init__.py", "dgr/templater")
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
