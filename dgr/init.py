"""`dgr init`: a complete sample project that builds and passes its tests as it is."""

from __future__ import annotations

from pathlib import Path

from dgr.errors import DgrError

SHEBANG = "#!/dgr/bin/busybox sh"

RUNLEVEL_TEXT = {
    "builder": "I run in the builder, with the image's rootfs at $ROOTFS",
    "build": "I run inside the image's rootfs, before files and templates are copied",
    "build-late": "I run inside the image's rootfs, after files and templates are copied",
    "inherit-build-early": "I run when an image is built on top of this one, before its build runlevel",
    "inherit-build-late": "I run when an image is built on top of this one, after its build-late runlevel",
    "prestart-early": "I run at container start, before templating",
    "prestart-late": "I run at container start, after templating",
}

FILES = {
    "aci-manifest.yml": "name: aci.example.com/aci-dummy:1\n",
    ".gitignore": "target/\n",
    "files/etc/dummy": "Dummy file\n",
    "attributes/attributes.yml": "default:\n  dummy: world\n",
    "templates/greeting.partial": "{% macro greeting(name) %}Hello {{ name }}{% endmacro %}\n",
    "templates/etc/templated.tmpl": '{% import "greeting.partial" as g %}{{ g.greeting(dummy) }}\n',
    "templates/etc/templated.tmpl.cfg": 'uid: 0\ngid: 0\nmode: 0644\ncheckCmd: "true"\n',
    "tests/wait.sh": "#!/bin/sh\nexit 0\n",
    "tests/dummy.bats": """#!/usr/bin/env bats

@test "templated file is rendered at start" {
  result="$(cat /etc/templated)"
  [ "$result" = "Hello world" ]
}

@test "files are copied into the image" {
  result="$(cat /etc/dummy)"
  [ "$result" = "Dummy file" ]
}
""",
}


def _runlevel_script(runlevel: str) -> str:
    return (
        f"{SHEBANG}\n"
        ". /dgr/bin/functions.sh\n"
        'isLevelEnabled "debug" && set -x\n\n'
        f'echo "{RUNLEVEL_TEXT[runlevel]}"\n'
    )


def sample_files() -> dict[str, str]:
    files = dict(FILES)
    for runlevel in RUNLEVEL_TEXT:
        files[f"runlevels/{runlevel}/10.{runlevel}.sh"] = _runlevel_script(runlevel)
    return files


def init_project(path: Path, *, force: bool = False) -> None:
    """Write the sample project into `path` (which must be empty unless `force`)."""
    if path.exists() and any(path.iterdir()) and not force:
        raise DgrError("Path is not empty cannot init", path=path, hint="use -f to write into it anyway")
    for rel, text in sample_files().items():
        dest = path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
