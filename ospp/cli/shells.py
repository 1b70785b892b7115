"""The shell side of TAB completion: the scripts in completions/ and the answers ospp sends them.

click's own bash, zsh and fish support, changed where it breaks on ospp's words:

- bash splits words at ':' (COMP_WORDBREAKS), so ``/cachst:T`` reaches a completion function
  as three words and replaces only what follows the last ':'. The script also sends the line
  itself (COMP_LINE, COMP_POINT) and COMP_WORDBREAKS; ospp completes the whole ``/cachst:T``
  and answers with only the part bash replaces, as bash-completion's __ltrim_colon_completions
  does. In a quotation the user opened, bash replaces all that follows the quote instead,
  and outside one it inserts the answer as it is: ospp escapes what the shell would split
  (a space in a path behind ``/inslic:``).
- a value that ends with ':' (``/inpkey:``) waits for its value: no space is added after it.
- fish split each answer at every comma, cutting descriptions short; it splits at the first.
- a completion that fails offers nothing instead of a traceback over the prompt (rerun with
  OSPP_DEBUG=1 to see it).

Imported only when the shell asks for completions (``_OSPP_COMPLETE`` is set) or the scripts
are generated, so that ordinary commands do not pay for it.
"""

from __future__ import annotations

import os
import re

from click.shell_completion import (
    BashComplete,
    CompletionItem,
    FishComplete,
    ShellComplete,
    ZshComplete,
    add_completion_class,
    split_arg_string,
)

BASH_SOURCE = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local response completion type value

    response=$(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD=$COMP_CWORD \\
COMP_LINE="$COMP_LINE" COMP_POINT=$COMP_POINT COMP_WORDBREAKS="$COMP_WORDBREAKS" \\
%(complete_var)s=bash_complete "$1")

    for completion in $response; do
        IFS=',' read -r type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("$value")
            # /name: waits for its value: no space after it
            [[ $value == *: ]] && compopt -o nospace
        fi
    done

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""

ZSH_SOURCE = """\
#compdef %(prog_name)s

%(complete_func)s() {
    local -a completions completions_with_descriptions open open_with_descriptions
    local -a response
    (( ! $+commands[%(prog_name)s] )) && return 1

    response=("${(@f)$(env COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT-1)) \\
%(complete_var)s=zsh_complete %(prog_name)s)}")

    for type key descr in ${response}; do
        if [[ "$type" == "plain" ]]; then
            # /name: waits for its value: no space after it
            if [[ "$key" == *: ]]; then
                if [[ "$descr" == "_" ]]; then
                    open+=("$key")
                else
                    open_with_descriptions+=("$key":"$descr")
                fi
            elif [[ "$descr" == "_" ]]; then
                completions+=("$key")
            else
                completions_with_descriptions+=("$key":"$descr")
            fi
        elif [[ "$type" == "dir" ]]; then
            _path_files -/
        elif [[ "$type" == "file" ]]; then
            _path_files -f
        fi
    done

    if [ -n "$completions_with_descriptions" ]; then
        _describe -V unsorted completions_with_descriptions -U
    fi
    if [ -n "$open_with_descriptions" ]; then
        _describe -V unsorted open_with_descriptions -U -S ''
    fi

    if [ -n "$completions" ]; then
        compadd -U -V unsorted -a completions
    fi
    if [ -n "$open" ]; then
        compadd -U -V unsorted -S '' -a open
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    # autoload from fpath, call function directly
    %(complete_func)s "$@"
else
    # eval/source/. command, register function for later
    compdef %(complete_func)s %(prog_name)s
fi
"""

FISH_SOURCE = """\
function %(complete_func)s;
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \\
COMP_CWORD=(commandline -t) %(prog_name)s);

    for completion in $response;
        # split at the first comma only: descriptions have commas too
        set -l metadata (string split --max 1 "," -- $completion);

        if test $metadata[1] = "dir";
            __fish_complete_directories $metadata[2];
        else if test $metadata[1] = "file";
            __fish_complete_path $metadata[2];
        else if test $metadata[1] = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments "(%(complete_func)s)";
"""


class _Quiet(ShellComplete):
    """Offer nothing, rather than print a traceback over the prompt, when completion fails."""

    def complete(self) -> str:
        try:
            return super().complete()
        except Exception:
            if os.environ.get("OSPP_DEBUG"):
                raise
            return ""


class Bash(_Quiet, BashComplete):
    source_template = BASH_SOURCE
    _cut = ""  # the start of the word being completed that bash does not replace (to a ':')
    _quoted = False  # the word being completed is inside a quotation the user opened

    def get_completion_args(self) -> tuple[list[str], str]:
        line = os.environ.get("COMP_LINE")
        if line is None:  # a script from before COMP_LINE was sent
            return super().get_completion_args()
        point = int(os.environ.get("COMP_POINT") or len(line))  # characters, in a UTF-8 locale
        before = line[:point]
        words = split_arg_string(before)
        # a character typed now would start a new word: the cursor is after a word break
        if not words or len(split_arg_string(before + "x")) > len(words):
            incomplete = ""
        else:
            incomplete = words.pop()
        quote = _open_quote(before)
        if quote >= 0:
            # bash replaces what follows the quote the user opened, ':' or not
            inside = split_arg_string(before[quote:])[-1] if before[quote + 1 :] else ""
            self._cut = incomplete[: len(incomplete) - len(inside)]
            self._quoted = True
        elif ":" in os.environ.get("COMP_WORDBREAKS", ":"):
            self._cut = incomplete[: incomplete.rfind(":") + 1]
        return words[1:], incomplete

    def get_completions(self, args: list[str], incomplete: str) -> list[CompletionItem]:
        items = super().get_completions(args, incomplete)
        kept: list[CompletionItem] = []
        for item in items:
            if item.type != "plain":  # a file or directory: bash completes it itself
                kept.append(item)
            elif str(item.value).startswith(self._cut):
                value = str(item.value)[len(self._cut) :]
                if not self._quoted:  # bash inserts it as it is: a space must not split it
                    value = _UNSAFE.sub(r"\\\g<0>", value)
                kept.append(CompletionItem(value, type=item.type, help=item.help))
        return kept


# What bash would take for something other than a character of the word (printf %q's set).
_UNSAFE = re.compile(r"[^\w@%+=:,./~-]", re.ASCII)


def _open_quote(line: str) -> int:
    """Where the quotation that ``line`` ends inside opens (bash then inserts a completion
    inside it, after that quote), or -1."""
    opened = -1
    escaped = False
    for at, char in enumerate(line):
        quote = line[opened] if opened >= 0 else ""
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif char == quote:
            opened = -1
        elif not quote and char in "'\"":
            opened = at
    return opened


class Zsh(_Quiet, ZshComplete):
    source_template = ZSH_SOURCE


class Fish(_Quiet, FishComplete):
    source_template = FISH_SOURCE


SHELLS: dict[str, type[ShellComplete]] = {"bash": Bash, "zsh": Zsh, "fish": Fish}


def register() -> None:
    """Answer completion requests with these classes instead of click's."""
    for name, cls in SHELLS.items():
        add_completion_class(cls, name)
