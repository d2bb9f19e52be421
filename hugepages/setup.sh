#!/usr/bin/env bash
# Reserve 2 MiB hugepages for DPDK, mount hugetlbfs, show status, persist.
#
#   hugepages/setup.sh [--pages N] [--node N] [--mount DIR] [--no-mount]
#                      [--persist] [--root DIR] [--dry-run]
#   hugepages/setup.sh --status
#   hugepages/setup.sh --help
#
# Reserving is live (the kernel may grant fewer pages than asked when memory
# is fragmented: the script then says so and exits 2). Everything is
# idempotent: re-running with the same arguments changes nothing.
# --persist makes the reservation survive reboots: a sysctl.d file for the page
# count and, only where systemd's own dev-hugepages.mount is missing, an
# /etc/fstab line for the mount. --root DIR writes those files below DIR
# (for tests and image builds). --dry-run prints each command instead of
# running it. Not root: commands that need privilege run through sudo.
set -euo pipefail

PAGES=512
NODE=""
MOUNT_DIR=/dev/hugepages
DO_MOUNT=1
PERSIST=0
ROOT=""
DRY_RUN=0
STATUS=0
PAGE_KB=2048
SYSFS=${MS_SYSFS:-/sys}
SYSCTL_NAME=80-metricsstream-hugepages.conf

usage() { sed -n '2,17s/^# \{0,1\}//p' "$0"; }
log() { printf 'hugepages: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# run / write_file: privileged.sh sits beside this script once installed,
# in scripts/ in the repository.
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
lib=$here/privileged.sh
[[ -f $lib ]] || lib=$here/../scripts/privileged.sh
[[ -f $lib ]] || die "privileged.sh not found beside $0 or in ../scripts"
# shellcheck source=scripts/privileged.sh
. "$lib"

while [[ $# -gt 0 ]]; do
    case $1 in
        --pages) PAGES=${2:?--pages needs a number}; shift 2 ;;
        --pages=*) PAGES=${1#*=}; shift ;;
        --node) NODE=${2:?--node needs a NUMA node number}; shift 2 ;;
        --mount) MOUNT_DIR=${2:?--mount needs a directory}; shift 2 ;;
        --no-mount) DO_MOUNT=0; shift ;;
        --persist) PERSIST=1; shift ;;
        --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --status) STATUS=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ $PAGES =~ ^[0-9]+$ ]] || die "--pages must be a non-negative integer, got '$PAGES'"
[[ -z $NODE || $NODE =~ ^[0-9]+$ ]] || die "--node must be a NUMA node number, got '$NODE'"

HP_DIR=$SYSFS/kernel/mm/hugepages/hugepages-${PAGE_KB}kB
[[ -d $HP_DIR ]] || die "$HP_DIR missing: kernel without 2 MiB hugepage support (CONFIG_HUGETLBFS)"

# is_hugetlbfs_mounted DIR: true when DIR is a hugetlbfs mount point.
is_hugetlbfs_mounted() {
    awk -v d="$1" '$2 == d && $3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts
}

show_status() {
    local d size total free rsvd surp n node
    echo "hugepage pools (system-wide):"
    for d in "$SYSFS"/kernel/mm/hugepages/hugepages-*; do
        size=${d##*hugepages-}
        total=$(<"$d/nr_hugepages"); free=$(<"$d/free_hugepages")
        rsvd=$(<"$d/resv_hugepages"); surp=$(<"$d/surplus_hugepages")
        printf '  %-10s total=%-6s free=%-6s reserved=%-6s surplus=%s\n' \
            "$size" "$total" "$free" "$rsvd" "$surp"
    done
    echo "per NUMA node:"
    n=0
    for node in "$SYSFS"/devices/system/node/node[0-9]*; do
        [[ -d $node/hugepages ]] || continue
        n=$((n + 1))
        for d in "$node"/hugepages/hugepages-*; do
            printf '  %-6s %-10s total=%-6s free=%s\n' "${node##*/}" "${d##*hugepages-}" \
                "$(<"$d/nr_hugepages")" "$(<"$d/free_hugepages")"
        done
    done
    [[ $n -gt 0 ]] || echo "  (no NUMA information in sysfs)"
    echo "hugetlbfs mounts:"
    if ! awk '$3 == "hugetlbfs" { printf "  %s (%s)\n", $2, $4; found = 1 } END { exit !found }' /proc/mounts; then
        echo "  none: run '$0' (or mount -t hugetlbfs nodev $MOUNT_DIR)"
    fi
    local leftovers
    leftovers=$(find "$MOUNT_DIR" -maxdepth 1 -name '*map_*' 2>/dev/null | wc -l)
    if [[ $leftovers -gt 0 ]]; then
        echo "note: $leftovers DPDK page files left in $MOUNT_DIR (a crashed run without --in-memory;"
        echo "      remove with 'dpdk-hugepages.py -c' when no DPDK process runs)"
    fi
}

if [[ $STATUS -eq 1 ]]; then
    show_status
    exit 0
fi

# 1. Reserve.
if [[ -n $NODE ]]; then
    target=$SYSFS/devices/system/node/node$NODE/hugepages/hugepages-${PAGE_KB}kB/nr_hugepages
    [[ -e $target ]] || die "NUMA node $NODE has no 2 MiB hugepage pool ($target)"
else
    target=$HP_DIR/nr_hugepages
fi
current=$(<"$target")
if [[ $current -eq $PAGES ]]; then
    log "$PAGES pages of 2 MiB already reserved${NODE:+ on node $NODE}"
else
    log "reserving $PAGES pages of 2 MiB${NODE:+ on node $NODE} (was $current)"
    write_file "$PAGES" "$target"
    if [[ $DRY_RUN -eq 0 ]]; then
        got=$(<"$target")
        if [[ $got -lt $PAGES ]]; then
            log "kernel granted only $got of $PAGES pages (memory fragmented or too small);"
            log "reserve at boot instead: kernel command line 'hugepagesz=2M hugepages=$PAGES' or --persist and reboot"
            exit 2
        fi
    fi
fi

# 2. Mount.
if [[ $DO_MOUNT -eq 1 ]]; then
    if is_hugetlbfs_mounted "$MOUNT_DIR"; then
        log "hugetlbfs already mounted at $MOUNT_DIR"
    else
        log "mounting hugetlbfs at $MOUNT_DIR"
        run mkdir -p "$MOUNT_DIR"
        run mount -t hugetlbfs -o pagesize=2M nodev "$MOUNT_DIR"
    fi
fi

# 3. Persist.
if [[ $PERSIST -eq 1 ]]; then
    [[ -z $NODE ]] || log "note: sysctl cannot reserve per node; the persisted count is system-wide (use the kernel command line for per-node boot reservations)"
    sysctl_file=$ROOT/etc/sysctl.d/$SYSCTL_NAME
    content="# metricsstream: 2 MiB hugepages for DPDK (written by hugepages/setup.sh --persist)
vm.nr_hugepages = $PAGES"
    if [[ -f $sysctl_file ]] && [[ $(<"$sysctl_file") == "$content" ]]; then
        log "$sysctl_file already up to date"
    else
        log "writing $sysctl_file"
        run mkdir -p "$ROOT/etc/sysctl.d"
        write_file "$content" "$sysctl_file"
    fi
    if [[ $DO_MOUNT -eq 1 ]]; then
        unit_present=0
        for u in /lib/systemd/system/dev-hugepages.mount /usr/lib/systemd/system/dev-hugepages.mount \
                 "$ROOT/etc/systemd/system/dev-hugepages.mount"; do
            [[ -e $u ]] && unit_present=1
        done
        fstab=$ROOT/etc/fstab
        if [[ $MOUNT_DIR == /dev/hugepages && $unit_present -eq 1 ]]; then
            log "systemd's dev-hugepages.mount mounts $MOUNT_DIR at boot; no fstab line needed"
        elif [[ -f $fstab ]] && awk -v d="$MOUNT_DIR" '$2 == d && $3 == "hugetlbfs" { f = 1 } END { exit !f }' "$fstab"; then
            log "$fstab already mounts hugetlbfs at $MOUNT_DIR"
        else
            log "adding hugetlbfs line for $MOUNT_DIR to $fstab"
            line="nodev $MOUNT_DIR hugetlbfs pagesize=2M 0 0"
            if [[ $DRY_RUN -eq 1 ]]; then
                printf '+ echo %q | %stee -a %q\n' "$line" "${SUDO[*]:+${SUDO[*]} }" "$fstab"
            else
                printf '%s\n' "$line" | "${SUDO[@]}" tee -a "$fstab" >/dev/null
            fi
        fi
    fi
fi

[[ $DRY_RUN -eq 1 ]] || show_status
