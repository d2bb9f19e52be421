# shellcheck shell=bash
# Privileged steps for metricsstream's shell scripts; sourced, not run.
#   run CMD...            run CMD (through sudo when not root), or print it
#                         prefixed "+ " when the caller set DRY_RUN=1
#   write_file VALUE PATH write VALUE and a newline into PATH, the same way
# Installed beside the scripts that source it
# (/usr/local/lib/metricsstream/privileged.sh, see vagrant/provision.sh).

SUDO=()
if [[ $EUID -ne 0 ]]; then SUDO=(sudo); fi

run() {
    if [[ ${DRY_RUN:-0} -eq 1 ]]; then
        printf '+'; printf ' %q' "${SUDO[@]}" "$@"; printf '\n'
    else
        "${SUDO[@]}" "$@"
    fi
}

write_file() {
    if [[ ${DRY_RUN:-0} -eq 1 ]]; then
        printf '+ echo %q | %stee %q\n' "$1" "${SUDO[*]:+${SUDO[*]} }" "$2"
    else
        printf '%s\n' "$1" | "${SUDO[@]}" tee "$2" >/dev/null
    fi
}
