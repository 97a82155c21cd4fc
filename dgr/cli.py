"""The `dgr` command line: argument parsing, error reporting, exit codes.

`main()` handles arguments, errors and exit status; `dgr.commands.program()` does the work
by calling the library. No build logic lives here; the grammar is dgr/parser.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from dgr import userns
from dgr.errors import DgrError, UsageError
from dgr.log import log, parse_level, setup, use_color
from dgr.parser import build_parser, parse_set_env

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Commands that start no sandbox and touch no layer: an ordinary user runs them as is.
HOST_ONLY = frozenset({"init", "version", "config", "aci-version", "completion"})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet:
        args.log_level = "error"
    try:
        level = parse_level(args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    setup(level, color=use_color(args.color))
    if args.version:
        from dgr.commands import version

        return version(args)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    # SIGTERM unwinds like Ctrl-C, so that containers, sandboxes and temporary folders go.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command not in HOST_ONLY and userns.needs_rootless_namespace():
            return userns.rerun_in_rootless_namespace()  # as rootless podman (docs/security.md)
        args.set_env_flags = parse_set_env(args.set_env or [], {})
        args.set_env = parse_set_env(args.set_env or [], dict(os.environ))
        # Imported here, not above: the library costs ~100 ms to import, which `--help`,
        # `--version` and usage errors need not pay (bench/builds.py measures the floor).
        from dgr.commands import program

        return program(args)
    except UsageError as exc:
        log.error("%s", exc)
        _json_error(args, exc)
        return EXIT_USAGE
    except DgrError as exc:
        _report(exc)
        _json_error(args, exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except _Terminated:
        log.error("terminated")
        return 143


class _Terminated(BaseException):
    """Raised by the SIGTERM handler: unwinds the stack (finally blocks run), then exit 143."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


def _json_error(args: argparse.Namespace, exc: DgrError) -> None:
    """With --json, a failure is a document too: `{"error": {"message": ..., ...}}`."""
    if not args.json:
        return
    print(json.dumps({"error": exc.to_json()}, indent=2, ensure_ascii=False))


def _report(exc: DgrError) -> None:
    first, *rest = exc.render().splitlines()
    log.error("%s", first, exc_info=log.isEnabledFor(logging.DEBUG))
    for line in rest:
        log.error("%s", line)


if __name__ == "__main__":
    sys.exit(main())
