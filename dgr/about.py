"""What dgr is made of: its version and those of the tools and libraries it drives.

`dgr --version` shows them, so that a bug report (or a build that is not reproducible
between two machines, see docs/build.md) says which bwrap, skopeo, bats, busybox and Python
were at work. The tools are asked in parallel: the slowest one sets the cost.
"""

from __future__ import annotations

import platform
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata

import dgr
from dgr.errors import DgrError
from dgr.process import run

# tool -> the arguments that make it print its version
TOOLS = {
    "bwrap": ("--version",),  # bubblewrap 0.8.0
    "skopeo": ("--version",),  # skopeo version 1.9.3
    "bats": ("--version",),  # Bats 1.8.2
    "busybox": ("--help",),  # BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary.
}
LIBRARIES = {"jinja2": "Jinja2", "pyyaml": "PyYAML"}
PROBE_TIMEOUT = 10.0
_VERSION = re.compile(r"\d+(?:\.\d+)+")


def tool_version(tool: str) -> str | None:
    """The version `tool` reports, or None when it is not installed or says nothing usable."""
    path = shutil.which(tool)
    if path is None:
        return None
    try:
        output = run([path, *TOOLS[tool]], check=False, timeout=PROBE_TIMEOUT).output
    except DgrError:
        return None
    found = _VERSION.search(output.split("\n", 1)[0])
    return found.group(0) if found else None


def library_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    """dgr, the Python it runs on (the one bundled in images), its libraries, then the tools."""
    result: dict[str, str | None] = {"dgr": dgr.__version__, "python": platform.python_version()}
    result.update({name: library_version(dist) for name, dist in LIBRARIES.items()})
    with ThreadPoolExecutor(len(TOOLS)) as pool:
        result.update(zip(TOOLS, pool.map(tool_version, TOOLS), strict=True))
    return result
