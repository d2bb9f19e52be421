#!/usr/bin/env bash
# Bind a NIC to a DPDK driver (wraps dpdk-devbind.py) without cutting off the host.
#
#   scripts/bind-nic.sh [--driver auto|vfio-pci|uio_pci_generic] [--force] [--dry-run] IFACE|PCI
#   scripts/bind-nic.sh --unbind PCI [--dry-run]
#   scripts/bind-nic.sh --status
#   scripts/bind-nic.sh --candidates
#   scripts/bind-nic.sh --help
#
# Refuses, always (no --force): the interface of a default route (IPv4 or IPv6,
# any routing table), the interface of an active SSH session (ss sport 22 and
# $SSH_CONNECTION), and any bridge/bond/VLAN relative of those.
# Refuses unless --force: an interface that is up with global addresses
# (--force takes it down and flushes its addresses first).
# Mellanox mlx4/mlx5 NICs are never bound: their DPDK driver is bifurcated and
# works beside the kernel driver (needs rdma-core); the script prints the PCI
# address and exits 0.
# --driver auto (default) picks vfio-pci, with the unsafe no-IOMMU mode when
# the machine has no IOMMU, and uio_pci_generic when vfio-pci is unavailable or
# when there is no IOMMU and the kernel's vfio lacks the no-IOMMU mode
# (CONFIG_VFIO_NOIOMMU; without it vfio-pci's probe fails with -22, as in the
# Debian 12 guests of scripts/vm-smoke.sh). An explicit --driver vfio-pci
# without IOMMU fails when the mode did not take effect.
# The kernel driver in use is recorded in $MS_STATE_DIR (/run/metricsstream)
# so that --unbind restores it. --dry-run prints the commands (prefixed "+ ")
# instead of running them and still exits non-zero when it would refuse.
# --candidates lists bindable devices, one per line: "IFACE PCI DRIVER" for
# kernel-owned PCI NICs that are not protected, "- PCI DRIVER" for devices
# already on a DPDK driver.
# On success the last line on stdout is the PCI address for the profile's
# EAL allow-list (-a ADDRESS).
#
# Exit codes: 0 ok/nothing to do, 1 usage or failure, 3 no such PCI network
# device, 4 refused (default route / SSH, cannot be forced), 5 refused (up with
# addresses; use --force).
set -euo pipefail

SYSFS=${MS_SYSFS:-/sys}
STATE_DIR=${MS_STATE_DIR:-/run/metricsstream}
DEVBIND=${MS_DEVBIND:-dpdk-devbind.py}
DPDK_DRIVERS=" vfio-pci uio_pci_generic igb_uio "

DRIVER=auto
FORCE=0
DRY_RUN=0
MODE=bind
TARGET=""

usage() { sed -n '2,35s/^# \{0,1\}//p' "$0"; }
log() { printf 'bind-nic: %s\n' "$*" >&2; }
die() { local code=$1; shift; log "$*"; exit "$code"; }

# run / write_file (privileged.sh is installed beside this script too).
# shellcheck source=scripts/privileged.sh
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/privileged.sh"

while [[ $# -gt 0 ]]; do
    case $1 in
        --driver) DRIVER=${2:?--driver needs a name}; shift 2 ;;
        --driver=*) DRIVER=${1#*=}; shift ;;
        --force) FORCE=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --status) MODE=status; shift ;;
        --candidates) MODE=candidates; shift ;;
        --unbind) MODE=unbind; TARGET=${2:?--unbind needs a PCI address}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die 1 "unknown option: $1" ;;
        *) [[ -z $TARGET ]] || die 1 "one device at a time (got '$TARGET' and '$1')"; TARGET=$1; shift ;;
    esac
done

case $DRIVER in
    auto|vfio-pci|uio_pci_generic|igb_uio) ;;
    *) die 1 "unsupported --driver '$DRIVER' (auto, vfio-pci, uio_pci_generic, igb_uio)" ;;
esac

# normalize_pci ADDR: print the full domain:bus:dev.fn form or fail.
normalize_pci() {
    local a=${1,,}
    [[ $a =~ ^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$ ]] && a=0000:$a
    [[ $a =~ ^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$ ]] || return 1
    printf '%s\n' "$a"
}

# pci_of_iface IFACE: PCI address behind a network interface (virtio: its parent).
pci_of_iface() {
    local dev base
    dev=$(readlink -f "$SYSFS/class/net/$1/device" 2>/dev/null) || return 1
    [[ -n $dev ]] || return 1
    base=${dev##*/}
    if [[ $base =~ ^virtio[0-9]+$ ]]; then dev=${dev%/*}; base=${dev##*/}; fi
    normalize_pci "$base"
}

# iface_of_pci PCI: kernel interface name(s) of a PCI device (none when bound to DPDK).
iface_of_pci() {
    local d
    for d in "$SYSFS/bus/pci/devices/$1"/net/* "$SYSFS/bus/pci/devices/$1"/virtio*/net/*; do
        [[ -e $d ]] && printf '%s\n' "${d##*/}"
    done
    return 0
}

driver_of_pci() {
    local l
    l=$(readlink "$SYSFS/bus/pci/devices/$1/driver" 2>/dev/null) || { echo ""; return 0; }
    echo "${l##*/}"
}

# kernel_driver_guess PCI: kernel driver for a device from its modalias.
kernel_driver_guess() {
    local alias mod
    alias=$(<"$SYSFS/bus/pci/devices/$1/modalias") || return 1
    mod=$(modprobe --resolve-alias "$alias" 2>/dev/null | grep -vE '^(vfio_pci|uio_pci_generic|igb_uio)$' | head -n1) || true
    [[ -n $mod ]] || return 1
    if [[ -d $SYSFS/bus/pci/drivers/$mod ]]; then echo "$mod"; else echo "${mod//_/-}"; fi
}

# addr_iface ADDR: interface that holds local address ADDR.
addr_iface() {
    ip -o addr show 2>/dev/null | awk -v a="$1" '{ split($4, p, "/"); if (p[1] == a) print $2 }'
}

# Fill PROTECTED[iface]=reason with interfaces that must never be bound.
declare -A PROTECTED=()
protect() { [[ -n $1 && -z ${PROTECTED[$1]:-} ]] && PROTECTED[$1]=$2; return 0; }
find_protected() {
    local dev addr fam
    for fam in -4 -6; do
        while read -r dev; do protect "$dev" "carries the default route (ip $fam route)"; done < <(
            ip "$fam" route show table all default 2>/dev/null | grep -oE '\bdev [^ ]+' | awk '{ print $2 }')
    done
    while read -r addr; do
        addr=${addr%:*}; addr=${addr#[}; addr=${addr%]}; addr=${addr%%%*}; addr=${addr#::ffff:}
        [[ -n $addr ]] || continue
        while read -r dev; do protect "$dev" "carries an SSH session to $addr:22"; done < <(addr_iface "$addr")
    done < <(ss -tnH state established '( sport = :22 )' 2>/dev/null | awk '{ print $3 }')
    if [[ -n ${SSH_CONNECTION:-} ]]; then
        read -r _ _ addr _ <<<"$SSH_CONNECTION"
        while read -r dev; do protect "$dev" "carries this SSH session (\$SSH_CONNECTION, $addr)"; done < <(addr_iface "$addr")
    fi
    # Close over relatives: VLAN/macvlan lower devices and bridge/bond members.
    local changed=1 p rel
    while [[ $changed -eq 1 ]]; do
        changed=0
        for p in "${!PROTECTED[@]}"; do
            while read -r rel; do
                [[ -n $rel && -z ${PROTECTED[$rel]:-} ]] || continue
                PROTECTED[$rel]="is a lower device or member of $p, which ${PROTECTED[$p]}"; changed=1
            done < <(
                ip -o link show dev "$p" 2>/dev/null | sed -nE 's/^[0-9]+: [^@:]+@([^:]+):.*/\1/p'
                ip -o link show master "$p" 2>/dev/null | sed -nE 's/^[0-9]+: ([^@:]+)[@:].*/\1/p')
        done
    done
}

profile_hint() {
    log "put this in the profile's [eal] args: \"-a\", \"$1\""
    printf '%s\n' "$1"
}

have_iommu() { compgen -G "$SYSFS/kernel/iommu_groups/*" >/dev/null; }

# vfio_noiommu_supported: the kernel's vfio has the no-IOMMU mode
# (CONFIG_VFIO_NOIOMMU): its parameter is in sysfs (vfio loaded or built in)
# or in the module's parameter list.
noiommu_param() { echo "$SYSFS/module/vfio/parameters/enable_unsafe_noiommu_mode"; }
vfio_noiommu_supported() {
    [[ -e $(noiommu_param) ]] || modinfo -p vfio 2>/dev/null | grep -q '^enable_unsafe_noiommu_mode:'
}

pick_driver() {
    [[ $DRIVER == auto ]] || { echo "$DRIVER"; return; }
    if ! [[ -d $SYSFS/bus/pci/drivers/vfio-pci ]] && ! modinfo vfio-pci >/dev/null 2>&1; then
        echo uio_pci_generic
    elif ! have_iommu && ! vfio_noiommu_supported; then
        log "no IOMMU and this kernel's vfio has no no-IOMMU mode (CONFIG_VFIO_NOIOMMU): using uio_pci_generic"
        echo uio_pci_generic
    else
        echo vfio-pci
    fi
}

# load_driver DRV: modprobe it (vfio in no-IOMMU mode when there is no IOMMU).
load_driver() {
    case $1 in
        vfio-pci)
            if ! have_iommu; then
                log "no IOMMU groups: enabling vfio's unsafe no-IOMMU mode (fine for VMs and labs; DMA is not isolated)"
                if [[ -e $(noiommu_param) ]]; then
                    write_file Y "$(noiommu_param)"
                else
                    run modprobe vfio enable_unsafe_noiommu_mode=1
                fi
                # modprobe ignores the option when vfio is already loaded, and
                # a kernel without CONFIG_VFIO_NOIOMMU has no such parameter:
                # vfio-pci would then fail to probe (-22).
                if [[ $DRY_RUN -eq 0 && $(cat "$(noiommu_param)" 2>/dev/null) != Y ]]; then
                    die 1 "vfio's no-IOMMU mode is not available (kernel without CONFIG_VFIO_NOIOMMU?): use --driver uio_pci_generic (or auto)"
                fi
            fi
            run modprobe vfio-pci ;;
        uio_pci_generic) run modprobe uio_pci_generic ;;
        igb_uio) run modprobe igb_uio ;;
    esac
}

do_status() {
    "$DEVBIND" --status-dev net 2>/dev/null || die 1 "$DEVBIND failed (install Debian package 'dpdk')"
    find_protected
    echo
    echo "Never bound by bind-nic.sh (default route / SSH):"
    local p
    for p in "${!PROTECTED[@]}"; do printf '  %s: %s\n' "$p" "${PROTECTED[$p]}"; done
    if compgen -G "$STATE_DIR/*.driver" >/dev/null; then
        echo "Bound by bind-nic.sh (original kernel driver):"
        for p in "$STATE_DIR"/*.driver; do
            printf '  %s: %s\n' "$(basename "$p" .driver)" "$(<"$p")"
        done
    fi
}

do_unbind() {
    local pci cur orig
    pci=$(normalize_pci "$TARGET") || die 1 "--unbind takes a PCI address, got '$TARGET'"
    [[ -e $SYSFS/bus/pci/devices/$pci ]] || die 3 "no PCI device $pci"
    cur=$(driver_of_pci "$pci")
    if [[ $DPDK_DRIVERS != *" $cur "* ]]; then
        log "$pci is not bound to a DPDK driver (driver: ${cur:-none}); nothing to do"
        return 0
    fi
    if [[ -f $STATE_DIR/$pci.driver ]]; then
        orig=$(<"$STATE_DIR/$pci.driver")
    else
        orig=$(kernel_driver_guess "$pci") || die 1 "no record of $pci's kernel driver and modalias gives none; run: $DEVBIND --bind=DRIVER $pci"
        log "no record in $STATE_DIR; kernel driver from modalias: $orig"
    fi
    log "restoring $pci to kernel driver $orig"
    run "$DEVBIND" --bind="$orig" "$pci"
    run rm -f "$STATE_DIR/$pci.driver"
    if [[ $DRY_RUN -eq 0 ]]; then
        log "interface now: $(iface_of_pci "$pci" | tr '\n' ' ')(bring it up with ip link / your network manager)"
    fi
}

do_bind() {
    local pci iface cur drv
    [[ -n $TARGET ]] || { usage >&2; die 1 "name an interface or PCI address"; }
    if pci=$(normalize_pci "$TARGET"); then
        [[ -e $SYSFS/bus/pci/devices/$pci ]] || die 3 "no PCI device $pci"
        iface=$(iface_of_pci "$pci" | head -n1)
    else
        iface=$TARGET
        [[ -e $SYSFS/class/net/$iface ]] || die 3 "no network interface '$iface' (see: $0 --status)"
        pci=$(pci_of_iface "$iface") || die 3 "'$iface' is not a PCI device (virtual interface?): use a vdev such as net_af_packet or net_af_xdp instead"
    fi
    cur=$(driver_of_pci "$pci")
    log "device $pci${iface:+ (interface $iface)}, driver ${cur:-none}"

    case $cur in
        mlx4_core|mlx5_core)
            log "Mellanox ($cur) uses DPDK's bifurcated driver: do NOT bind it; keep $cur loaded,"
            log "install rdma-core/ibverbs, and allow-list the device directly"
            profile_hint "$pci"; return 0 ;;
    esac

    if [[ $DRIVER == auto && -n $cur && $DPDK_DRIVERS == *" $cur "* ]]; then
        log "$pci already bound to DPDK driver $cur"
        profile_hint "$pci"; return 0
    fi
    drv=$(pick_driver)
    if [[ $cur == "$drv" ]]; then
        log "$pci already bound to $drv"
        profile_hint "$pci"; return 0
    fi

    if [[ -n $iface ]]; then
        find_protected
        if [[ -n ${PROTECTED[$iface]:-} ]]; then
            die 4 "REFUSED: $iface ${PROTECTED[$iface]}; binding it would cut this host off (cannot be forced)"
        fi
        local up=0 addrs
        if ip -o link show dev "$iface" 2>/dev/null | grep -qE '<([^>]*,)?UP[,>]'; then up=1; fi
        addrs=$(ip -o addr show dev "$iface" scope global 2>/dev/null | awk '{ print $4 }' | tr '\n' ' ') || addrs=""
        if [[ $up -eq 1 && -n $addrs ]]; then
            [[ $FORCE -eq 1 ]] || die 5 "REFUSED: $iface is up with addresses ${addrs}(--force takes it down and flushes them)"
            log "--force: taking $iface down and flushing ${addrs}"
            run ip addr flush dev "$iface"
        fi
        [[ $up -eq 0 ]] || run ip link set dev "$iface" down
    fi

    load_driver "$drv"
    if [[ -n $cur && $DPDK_DRIVERS != *" $cur "* ]]; then
        run mkdir -p "$STATE_DIR"
        write_file "$cur" "$STATE_DIR/$pci.driver"
    fi
    run "$DEVBIND" --bind="$drv" "$pci"
    if [[ $DRY_RUN -eq 0 ]]; then
        cur=$(driver_of_pci "$pci")
        [[ $cur == "$drv" ]] || die 1 "binding failed: $pci has driver '${cur:-none}' (see dmesg)"
        log "$pci bound to $drv (restore with: $0 --unbind $pci)"
    fi
    profile_hint "$pci"
}

do_candidates() {
    local d iface pci drv
    find_protected
    for d in "$SYSFS"/class/net/*; do
        iface=${d##*/}
        pci=$(pci_of_iface "$iface") || continue
        if [[ -n ${PROTECTED[$iface]:-} ]]; then
            log "not a candidate: $iface ($pci) ${PROTECTED[$iface]}"
            continue
        fi
        printf '%s %s %s\n' "$iface" "$pci" "$(driver_of_pci "$pci")"
    done
    for d in "$SYSFS"/bus/pci/devices/*; do
        [[ -e $d/class && $(<"$d/class") == 0x02* ]] || continue
        drv=$(driver_of_pci "${d##*/}")
        [[ $DPDK_DRIVERS == *" $drv "* && -n $drv ]] && printf -- '- %s %s\n' "${d##*/}" "$drv"
    done
    return 0
}

case $MODE in
    candidates) do_candidates ;;
    status) do_status ;;
    unbind) do_unbind ;;
    bind) do_bind ;;
esac
