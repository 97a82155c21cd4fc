"""The command line's grammar: every command, flag and choice of `dgr` (argparse).

Used by the CLI (dgr/cli.py) to read arguments, by `dgr clean COMMAND` to read the command it
runs next, and by `dgr completion` to write shell completion from the grammar itself.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dgr.errors import UsageError
from dgr.log import COLOR_CHOICES

THEN_COMMANDS = ("build", "install", "test", "try", "sign", "push")
EXPORT_FORMATS = ("docker-archive", "oci-archive")
INSTALL_DESTINATIONS = ("store", "podman", "docker")
SHELLS = ("bash", "zsh")
# Build steps after which --shell-after opens a shell (dgr.build.step_label).
SHELL_STEPS = ("builder", "inherit-build-early", "build", "files", "build-late", "inherit-build-late")
# Commands whose result is not a document: --json is refused.
NO_JSON = {"run": "its output is the container's", "completion": "it prints a shell script"}


def parse_set_env(values: Sequence[str], environ: dict[str, str]) -> dict[str, str]:
    """Host `DGR_ENV_X=v` become `X=v`; `--set-env X=v` flags win over them."""
    result = {k[len("DGR_ENV_") :]: v for k, v in environ.items() if k.startswith("DGR_ENV_") and len(k) > 8}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--set-env {item!r}: environment variable must be specified as name=value")
        result[name] = value
    return result


class _Parser(argparse.ArgumentParser):
    """argparse with a "did you mean" for a mistyped choice (a command word, a format...),
    and whose subcommands report an unknown flag with their own usage, not the top-level one."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is None or value in action.choices:
            return
        choices = [str(choice) for choice in action.choices]
        close = difflib.get_close_matches(str(value), choices, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise argparse.ArgumentError(
            action, f"invalid choice: {value!r}{guess} (choose from {', '.join(choices)})"
        )

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _globals(suppress: bool) -> _Parser:
    """Global flags, accepted before and after the command word."""
    p = _Parser(add_help=False)
    d = argparse.SUPPRESS if suppress else None
    p.add_argument(
        "-V",
        "--version",
        action="store_true",
        default=d if suppress else False,
        help="print the versions of dgr and of the tools it drives, and exit",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=d if suppress else False,
        help="print the result as one JSON document on stdout (docs/cli.md)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=d if suppress else False,
        help="log errors only (-L error)",
    )
    p.add_argument(
        "--color",
        choices=COLOR_CHOICES,
        default=d if suppress else "auto",
        help="colour the log: auto (a terminal, unless NO_COLOR is set), always, never",
    )
    p.add_argument(
        "-W",
        "--work-path",
        metavar="DIR",
        default=d if suppress else ".",
        help="project folder (default: .)",
    )
    p.add_argument(
        "-L",
        "--log-level",
        "--loglevel",
        dest="log_level",
        metavar="LEVEL",
        default=d if suppress else "info",
        help="error|warn|info|debug|trace (default: info)",
    )
    p.add_argument(
        "-H", "--home-path", metavar="DIR", default=d, help="configuration folder (default: ~/.config/dgr)"
    )
    p.add_argument(
        "-p", "--targets-root-path", metavar="DIR", default=d, help="put targets under this folder"
    )
    p.add_argument(
        "--set-env",
        action="append",
        default=d if suppress else [],
        metavar="NAME=VALUE",
        help="environment for build scripts (repeatable)",
    )
    return p


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dgr",
        description="Build container images from a project folder, configure them at start, test them.",
        parents=[_globals(False)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = [_globals(True)]

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=common)

    p = add("init", "scaffold a sample project that builds and passes its tests")
    p.add_argument("-f", "--force", action="store_true", help="init even if the folder is not empty")
    p = add("build", "build the image (reuses the previous build when no input changed)")
    p.add_argument("-k", "--keep-builder", action="store_true", help="keep the build's work folder")
    p.add_argument(
        "--shell-on-failure",
        action="store_true",
        help="when a step fails, open a shell in its sandbox (leaving it fails the build)",
    )
    p.add_argument(
        "--shell-after",
        choices=SHELL_STEPS,
        metavar="STEP",
        help=f"open a shell in the sandbox after STEP, then go on (always builds): {', '.join(SHELL_STEPS)}",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="fail the build when its runlevels take longer in all (default: build.timeout, none)",
    )
    p.add_argument(
        "--script-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="kill a runlevel script that takes longer, failing the build (default: build.scriptTimeout)",
    )
    p = add("clean", "remove the target folder (then run COMMAND if given)")
    p.add_argument(
        "then",
        nargs="?",
        choices=THEN_COMMANDS,
        metavar="COMMAND",
        help=f"one of {', '.join(THEN_COMMANDS)}",
    )
    p.add_argument("-k", "--keep-builder", action="store_true", help=argparse.SUPPRESS)
    add("try", "render the templates with the project's attributes into target/try/")
    p = add("test", "build if needed, start the image and run its tests (extra arguments go to pytest)")
    p.add_argument("-k", "--keep-builder", action="store_true", help="keep test containers and work folders")
    p.add_argument(
        "pytest_args",
        nargs=argparse.REMAINDER,
        metavar="PYTEST_ARGS",
        help="passed to pytest (e.g. -- -x -n 2)",
    )
    p = add(
        "install",
        "put the built image into the local store, or podman's or docker's (building it if needed)",
    )
    p.add_argument("-t", "--test", action="store_true", help="test first; install only if the tests pass")
    p.add_argument(
        "--to",
        choices=INSTALL_DESTINATIONS,
        default="store",
        help="store: dgr's local store (default); podman, docker: load it into the engine's images",
    )
    p.add_argument("-k", "--keep-builder", action="store_true", help=argparse.SUPPRESS)
    p = add("export", "write the image as an archive that podman load and docker load accept")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="the archive to write (default: target/image.docker.tar or target/image.oci.tar)",
    )
    p.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="docker-archive",
        help="docker-archive (default: podman and docker load it) or oci-archive",
    )
    p = add("push", "push the image to the remotes of config.yml's push section (building it if needed)")
    p.add_argument("-t", "--test", action="store_true", help="test first; push only if the tests pass")
    p.add_argument("-k", "--keep-builder", action="store_true", help=argparse.SUPPRESS)
    p = add("run", "run the built image (prestart included); arguments after -- replace the app's exec")
    p.add_argument("--override", metavar="JSON", help="attribute override (sets TEMPLATER_OVERRIDE)")
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="MOUNT=HOSTDIR",
        help="bind HOSTDIR on a mount point (its name or its path); repeatable",
    )
    p.add_argument(
        "--publish",
        action="append",
        default=[],
        metavar="[HOSTIP:]HOSTPORT:PORT",
        help="publish a TCP port of the container on the host (PORT: a number or a port name); repeatable",
    )
    p.add_argument(
        "--net",
        choices=("none", "host"),
        default="none",
        help="network: none (loopback only, default) or host (the app's ports are reachable)",
    )
    p.add_argument("exec", nargs=argparse.REMAINDER, help="command to run instead of the app's exec")
    add("graph", "write target/graph.dot (and graph.png when graphviz is installed)")
    p = add("kube", "write the pod's Kubernetes Pod manifest (target/pod.kube.yml; builds if needed)")
    p.add_argument(
        "--registry",
        default="localhost",
        metavar="PREFIX",
        help="image references are PREFIX/<image name>:<version> (default: localhost)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of target/pod.kube.yml")
    add("sign", "gpg-sign target/image.aci into image.aci.asc (builds if needed)")
    add("version", "print the version")
    p = add("config", "print the configuration (or one key)")
    p.add_argument("key", nargs="?", help="a key such as targetWorkDir")
    p = add("cp", "copy a path of the image (its own layer) to a host folder")
    p.add_argument("path", help="a path inside the image, e.g. /etc/hosts")
    p.add_argument("host_dir", metavar="HOSTDIR", help="host folder to copy into")
    p = add("aci-version", "print the version label of an ACI file")
    p.add_argument("file", type=Path)
    p = add("store", "list or remove the images of the local store")
    actions = p.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    actions.add_parser("list", help="list stored images", description="list stored images", parents=common)
    p = actions.add_parser(
        "rm",
        help="remove stored images",
        parents=common,
        description="remove images by ID (sha512-..., a unique prefix) or name[:version]; OCI images "
        "by digest (sha256:..., a unique prefix) or reference (docker://..., oci:..., oci-archive:...)",
    )
    p.add_argument(
        "reference", metavar="REF", help="sha512-ID prefix, name[:version], sha256: prefix or OCI reference"
    )
    p = add("completion", "print a shell completion script (bash or zsh)")
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help=f"one of {', '.join(SHELLS)}")
    return parser
