_slmgr_completion() {
    local IFS=$'\n'
    local response completion type value

    response=$(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD=$COMP_CWORD \
COMP_LINE="$COMP_LINE" COMP_POINT=$COMP_POINT COMP_WORDBREAKS="$COMP_WORDBREAKS" \
_SLMGR_COMPLETE=bash_complete "$1")

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

_slmgr_completion_setup() {
    complete -o nosort -F _slmgr_completion slmgr
}

_slmgr_completion_setup;
