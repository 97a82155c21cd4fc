"""``python -m dgr.templater [-o ENVVAR] [-L LEVEL] [-t TARGET_ROOT] DIR`` — run at every
container start by /dgr/bin/prestart.

Reads ``DIR/attributes`` and ``DIR/templates`` and renders into TARGET_ROOT (default ``/``).
Exit 0 on success; on failure one line ``templater: <file>:<line>: <message>`` on stderr and
exit 1; bad usage exits 2. Start-up time matters here: no argparse, no logging, and nothing
beyond what Python has loaded when the run was prepared at build time (see ``prepared``).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

USAGE = "usage: python -m dgr.templater [-o ENVVAR] [-L LEVEL] [-t TARGET_ROOT] DIR"
HELP = f"""{USAGE}

Render DIR/templates with the attributes of DIR/attributes into TARGET_ROOT.

  -o ENVVAR       override variable (default TEMPLATER_OVERRIDE; ENVVAR_BASE64 is read first)
  -L LEVEL        error, warn, info, debug (list written files) or trace (also print the
                  attributes and every rendered file); default: $LOG_LEVEL or info
  -t TARGET_ROOT  where outputs go (default /)
"""
LEVELS = ("error", "warn", "warning", "info", "debug", "trace")


class Options:
    """The command line: DIR, the override variable, the log level and TARGET_ROOT as given
    (a plain class: typing's NamedTuple costs 7 ms to import in an image)."""

    __slots__ = ("directory", "override_var", "level", "target_root")

    def __init__(self, directory: str, override_var: str | None, level: str, target_root: str) -> None:
        self.directory = directory
        self.override_var = override_var
        self.level = level
        self.target_root = target_root


class UsageError(Exception):
    """Bad command line."""


def parse_args(argv: Sequence[str], env: dict[str, str]) -> Options:
    """Options from argv (without the program name); UsageError when they do not fit."""
    values: dict[str, str] = {}
    positional: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            raise SystemExit(_print_help())
        if arg in ("-o", "-L", "-t"):
            if not args:
                raise UsageError(f"option {arg} needs a value")
            values[arg] = args.pop(0)
        elif len(arg) > 2 and arg[:2] in ("-o", "-L", "-t"):
            values[arg[:2]] = arg[2:]
        elif arg == "--":
            positional.extend(args)
            break
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}")
        else:
            positional.append(arg)
    if len(positional) != 1:
        raise UsageError("expected exactly one DIR")
    level = (values.get("-L") or env.get("LOG_LEVEL") or "info").lower()
    if level not in LEVELS:
        raise UsageError(f"unknown log level {level!r} (use one of {', '.join(LEVELS)})")
    return Options(positional[0], values.get("-o"), level, values.get("-t", "/"))


def _print_help() -> int:
    sys.stdout.write(HELP)
    return 0


def _trace(text: str) -> None:
    sys.stderr.write(f"templater: {text}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the templater; return the exit status (0 ok, 1 failure, 2 usage)."""
    env = dict(os.environ)
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv, env)
    except UsageError as exc:
        sys.stderr.write(f"templater: {exc}\n{USAGE}\n")
        return 2
    verbose = options.level in ("debug", "trace")
    try:
        written = _run(options, env)
    except Exception as exc:
        from dgr.errors import DgrError

        if isinstance(exc, DgrError):
            sys.stderr.write("templater: " + " ".join(str(exc).split("\n")) + "\n")
            if verbose and exc.details:
                sys.stderr.write(exc.details.rstrip("\n") + "\n")
            return 1
        # a bug of ours: still one line, the traceback when asked
        sys.stderr.write(f"templater: internal error: {type(exc).__name__}: {exc}\n")
        if verbose:
            import traceback

            traceback.print_exc()
        return 1
    if options.level == "debug":
        for path in written:
            sys.stderr.write(f"templater: wrote {path}\n")
    return 0


def main_in_image() -> None:
    """The bundled templater's entry point (dgr.internals.TEMPLATER_MAIN): :func:`main` in
    a process of its own, hence without garbage collection (3 ms of collections while
    Jinja2 is imported, in a run too short to need any) and without the interpreter's
    teardown (1 ms, 4 with Jinja2 loaded): the output is flushed and the process ends."""
    import gc

    gc.disable()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(options: Options, env: dict[str, str]) -> Sequence[str | Path]:
    """The prepared run when it applies (not at trace level: that prints the attributes),
    else render now, with what the build compiled."""
    if options.level != "trace":
        from dgr.templater.prepared import run_prepared

        written = run_prepared(options.directory, options.target_root, env, options.override_var)
        if written is not None:
            return written
    from dgr.templater import regexes

    regexes.install()  # before Jinja2 and PyYAML compile theirs
    from pathlib import Path

    from dgr.templater import run
    from dgr.templater.prepared import use_compiled

    use_compiled(options.directory)
    directory = Path(options.directory)
    return run(
        directory / "attributes",
        directory / "templates",
        Path(options.target_root),
        env,
        override_var=options.override_var,
        trace=_trace if options.level == "trace" else None,
    )


if __name__ == "__main__":
    sys.exit(main())
