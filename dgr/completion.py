"""Shell completion scripts made from dgr's own argument parser (`dgr completion bash|zsh`).

The script is static: it lists the commands, each command's flags and the values of the
flags and arguments that take a fixed set of them, so completing costs no dgr start. zsh
loads the bash script through `bashcompinit`. Anything else (paths, names) falls back to the
shell's file name completion; folder flags (`-W`, `-H`, `-p`) complete folders.
"""

from __future__ import annotations

import argparse
import shlex

import dgr
from dgr.log import LEVELS

FOLDER_METAVARS = ("DIR", "HOSTDIR")
# Values of flags that check them themselves (no argparse choices), by metavar.
METAVAR_WORDS = {"LEVEL": [name for name in LEVELS if name != "warning"]}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings]


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """The values of this parser's arguments that take a fixed set (command words...)."""
    return [
        str(c) for a in parser._actions if not a.option_strings and a.choices is not None for c in a.choices
    ]


def _values(parser: argparse.ArgumentParser) -> list[tuple[list[str], str]]:
    """(flags, bash code completing their value) for this parser's flags that take a value."""
    result = []
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:
            continue
        words = METAVAR_WORDS.get(str(action.metavar))
        if action.choices is not None or words:
            choices = shlex.quote(" ".join(str(c) for c in action.choices or words or ()))
            code = f'COMPREPLY=($(compgen -W {choices} -- "$cur"))'
        elif action.metavar in FOLDER_METAVARS:
            code = 'COMPREPLY=($(compgen -d -- "$cur"))'
        else:
            code = "COMPREPLY=()"  # empty: the shell completes file names
        result.append((list(action.option_strings), code))
    return result


def _case(key: str, parser: argparse.ArgumentParser) -> str:
    values = "".join(
        f"                {'|'.join(flags)}) {code}; return ;;\n" for flags, code in _values(parser)
    )
    flags, words = (shlex.quote(" ".join(found)) for found in (_flags(parser), _words(parser)))
    return (
        f"        {shlex.quote(key)})\n"
        f"            case $prev in\n{values}            esac\n"
        f'            if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W {flags} -- "$cur"))\n'
        f'            else COMPREPLY=($(compgen -W {words} -- "$cur")); fi ;;\n'
    )


def bash_script(parser: argparse.ArgumentParser) -> str:
    commands = _subcommands(parser)
    parsers = {"": parser}
    for name, sub in commands.items():
        parsers[name] = sub
        for action_name, action_parser in _subcommands(sub).items():
            parsers[f"{name} {action_name}"] = action_parser
    value_flags = sorted(
        {flag for p in parsers.values() for flags, _ in _values(p) for flag in flags},
        key=lambda f: (len(f), f),
    )
    nested = " ".join(name for name, sub in commands.items() if _subcommands(sub))
    cases = "".join(_case(key, p) for key, p in parsers.items())
    return f"""\
# bash completion for dgr {dgr.__version__}, made by `dgr completion bash`.
# Load it now:  source <(dgr completion bash)
# or for good:  dgr completion bash > ~/.local/share/bash-completion/completions/dgr
_dgr() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}}
    local key="" word skip="" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${{COMP_WORDS[i]}}
        if [[ -n $skip ]]; then skip=""; continue; fi
        case $word in
            --) return ;;
            {"|".join(value_flags)}) skip=1 ;;
            -*) ;;
            *)
                if [[ -z $key ]]; then key=$word
                elif [[ " {nested} " == *" $key "* ]]; then key="$key $word"; break
                else break
                fi ;;
        esac
    done
    case $key in
{cases}        *) COMPREPLY=() ;;
    esac
}}
complete -o default -F _dgr dgr
"""


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of `parser` (dgr's) for `shell` (bash or zsh)."""
    script = bash_script(parser)
    if shell == "zsh":
        return (
            "#compdef dgr\n# zsh completion for dgr: the bash one, through bashcompinit.\n"
            "# Load it now:  source <(dgr completion zsh)\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + script
        )
    return script
