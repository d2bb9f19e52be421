#!/usr/bin/env bash
# Provision a metricsstream host (Vagrant VM or bare metal): packages,
# hugepages, DPDK driver, data NIC binding, release build, install.
#
#   vagrant/provision.sh appliance|generator [--data-mac MAC | --data-nic IFACE|PCI]
#                        [--pages N] [--driver auto|vfio-pci|uio_pci_generic]
#                        [--binary PATH] [--no-setup] [--no-build] [--dry-run]
#
# The data NIC is chosen by --data-mac (the Vagrantfile pins the MACs), else
# --data-nic, else the PCI address saved by an earlier run in
# /etc/metricsstream/data-nic, else the only bindable candidate of
# `scripts/bind-nic.sh --candidates` (the default-route/SSH interface never is).
# --binary PATH installs a release binary built elsewhere (e.g. on a Debian 12
# host with the same libdpdk 22.11: MS_HOST_BINARY in the Vagrantfile) instead
# of building one: no Rust toolchain, only the runtime packages are installed
# (and only those missing). On a guest with one CPU the installed profile maps
# the main and worker lcores onto CPU 0 (--lcores 0@0,1@0 instead of -l 0-1).
# --dry-run prints every command it would run (prefixed "+ ") and changes
# nothing; it exits non-zero when binding would be refused.
# Installs: /usr/local/bin/metricsstream, /usr/local/lib/metricsstream/
# {bind-nic.sh,hugepages-setup.sh,privileged.sh}, /etc/metricsstream/{virtio.toml,
# metricsstream.env} and, for the appliance, metricsstream.service.
set -euo pipefail

# Provisioning writes /etc and /usr/local: run it as root (a dry run needs no root).
if [[ $EUID -ne 0 && " $* " != *" --dry-run "* ]]; then
    exec sudo bash "$0" "$@"
fi

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROLE=""
DATA_MAC=""
DATA_NIC=""
PAGES=512
DRIVER=auto
DO_SETUP=1
BINARY=""
DO_BUILD=1
DRY_RUN=0
ETC=${MS_ETC:-/etc/metricsstream}
LIBDIR=/usr/local/lib/metricsstream
SYSFS=${MS_SYSFS:-/sys}

usage() { sed -n '2,22s/^# \{0,1\}//p' "$0"; }
log() { printf '\n==> provision: %s\n' "$*" >&2; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/privileged.sh
. "$REPO/scripts/privileged.sh"

while [[ $# -gt 0 ]]; do
    case $1 in
        appliance|generator) ROLE=$1; shift ;;
        --data-mac) DATA_MAC=${2:?--data-mac needs a MAC}; shift 2 ;;
        --data-nic) DATA_NIC=${2:?--data-nic needs an interface or PCI address}; shift 2 ;;
        --pages) PAGES=${2:?--pages needs a number}; shift 2 ;;
        --driver) DRIVER=${2:?--driver needs a name}; shift 2 ;;
        --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
        --no-setup) DO_SETUP=0; shift ;;
        --no-build) DO_BUILD=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ -n $ROLE ]] || { usage >&2; die "role missing: appliance or generator"; }

DRY=()
[[ $DRY_RUN -eq 0 ]] || DRY=(--dry-run)

[[ -z $BINARY || -f $BINARY || $DRY_RUN -eq 1 ]] || die "--binary $BINARY: no such file"

# 1. Packages and toolchain: the project's own setup script, as on bare metal;
#    with --binary only the runtime (DPDK libraries, PMDs, tools) is needed.
RUNTIME_PACKAGES=(dpdk dpdk-dev librte-net-virtio23 librte-net-pcap23 librte-mempool-ring23
                  pciutils kmod iproute2 curl ethtool)
if [[ $DO_SETUP -eq 1 && -n $BINARY ]]; then
    log "runtime packages for the prebuilt binary $BINARY"
    need=()
    for p in "${RUNTIME_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
    done
    if [[ ${#need[@]} -gt 0 ]]; then
        run apt-get update
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
    else
        printf '    all present: %s\n' "${RUNTIME_PACKAGES[*]}" >&2
    fi
elif [[ $DO_SETUP -eq 1 ]]; then
    log "packages and toolchain (scripts/setup.sh)"
    if [[ -f $REPO/scripts/setup.sh ]]; then
        run bash "$REPO/scripts/setup.sh"
    else
        printf 'provision: %s/scripts/setup.sh missing; installing the DPDK packages only\n' "$REPO" >&2
        run apt-get update
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y dpdk dpdk-dev libdpdk-dev \
            pkg-config clang libclang-dev iproute2 pciutils kmod
    fi
fi

# Tools the ops scripts call: lspci (dpdk-devbind.py), modprobe, ss/ip.
if [[ $DO_SETUP -eq 1 ]]; then
    need=()
    command -v lspci >/dev/null || need+=(pciutils)
    command -v modprobe >/dev/null || need+=(kmod)
    command -v ss >/dev/null || need+=(iproute2)
    if [[ ${#need[@]} -gt 0 ]]; then
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}"
    fi
fi

# 2. Hugepages, persistent across reboots.
log "hugepages: $PAGES x 2 MiB"
# It uses sudo itself when needed; under --dry-run it prints its own commands.
bash "$REPO/hugepages/setup.sh" --pages "$PAGES" --persist "${DRY[@]}"

# 3. Which NIC carries the data path?
mac_iface() {
    local d want=${1,,}
    want=${want//-/:}
    if [[ $want =~ ^[0-9a-f]{12}$ ]]; then want=$(sed -E 's/(..)/\1:/g; s/:$//' <<<"$want"); fi
    for d in "$SYSFS"/class/net/*; do
        [[ -r $d/address && $(<"$d/address") == "$want" ]] && { echo "${d##*/}"; return 0; }
    done
    return 1
}
nic=""
if [[ -n $DATA_MAC ]] && nic=$(mac_iface "$DATA_MAC"); then
    log "data NIC: $nic (MAC $DATA_MAC)"
elif [[ -n $DATA_NIC ]]; then
    nic=$DATA_NIC; log "data NIC: $nic (--data-nic)"
elif [[ -r $ETC/data-nic ]]; then
    nic=$(<"$ETC/data-nic"); log "data NIC: $nic (saved in $ETC/data-nic by an earlier run)"
else
    log "data NIC: looking for candidates${DATA_MAC:+ (no interface has MAC $DATA_MAC)}"
    mapfile -t cands < <(bash "$REPO/scripts/bind-nic.sh" --candidates)
    printf '    %s\n' "${cands[@]:-(none)}" >&2
    [[ ${#cands[@]} -eq 1 ]] || die "need exactly one candidate data NIC, found ${#cands[@]}: pass --data-mac or --data-nic"
    read -r iface pci _ <<<"${cands[0]}"
    if [[ $iface == - ]]; then nic=$pci; else nic=$iface; fi
fi

# 4. DPDK driver (vfio-pci, no-IOMMU mode when there is no IOMMU; else
#    uio_pci_generic) and binding; bind-nic.sh refuses management interfaces.
log "binding $nic for DPDK (driver $DRIVER)"
bind_out=$(bash "$REPO/scripts/bind-nic.sh" --driver "$DRIVER" "${DRY[@]}" "$nic") || {
    rc=$?; [[ -z ${bind_out:-} ]] || printf '%s\n' "$bind_out"; die "binding $nic failed or was refused (bind-nic.sh exit $rc)"; }
if [[ $DRY_RUN -eq 1 ]]; then sed '$d' <<<"$bind_out"; fi
pci=$(tail -n1 <<<"$bind_out")
[[ $pci =~ ^[0-9a-f]{4}: ]] || die "bind-nic.sh printed no PCI address"
run mkdir -p "$ETC"
if [[ $DRY_RUN -eq 1 ]]; then
    printf '+ echo %q > %q\n' "$pci" "$ETC/data-nic"
else
    printf '%s\n' "$pci" >"$ETC/data-nic"
fi

# 5. The release binary: the given one, else built here.
if [[ -n $BINARY ]]; then
    log "installing the prebuilt binary $BINARY"
    run install -m 0755 "$BINARY" /usr/local/bin/metricsstream
    # Fails here, not at the first run, when a library is missing.
    [[ $DRY_RUN -eq 1 ]] || /usr/local/bin/metricsstream --version >&2 \
        || die "$BINARY does not run here (ldd /usr/local/bin/metricsstream: same Debian 12 and libdpdk 22.11?)"
elif [[ $DO_BUILD -eq 1 ]]; then
    log "building target/release/metricsstream"
    # scripts/setup.sh installs rustup's toolchain into ~/.cargo when the
    # distribution's is missing.
    if [[ -r $HOME/.cargo/env ]]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    run cargo build --release --manifest-path "$REPO/Cargo.toml"
    run install -m 0755 "$REPO/target/release/metricsstream" /usr/local/bin/metricsstream
fi

# 6. Install helpers, profile with the real PCI address, environment, unit.
log "installing helpers and profile"
run install -d "$LIBDIR" "$ETC"
run install -m 0644 "$REPO/scripts/privileged.sh" "$LIBDIR/privileged.sh"
run install -m 0755 "$REPO/scripts/bind-nic.sh" "$LIBDIR/bind-nic.sh"
run install -m 0755 "$REPO/hugepages/setup.sh" "$LIBDIR/hugepages-setup.sh"
if [[ -f $REPO/docs/operations.md ]]; then
    run install -D -m 0644 "$REPO/docs/operations.md" /usr/local/share/doc/metricsstream/operations.md
fi
# The profile's "-l 0-1" (main lcore + one worker) needs two CPUs; with one,
# map both lcores onto CPU 0 (the worker polls, the main lcore mostly sleeps).
cpus=$(nproc 2>/dev/null || echo 2)
lcore_sed=""
if [[ $cpus -lt 2 ]]; then
    lcore_sed='s/"-l", "0-1"/"--lcores", "0@0,1@0"/'
    log "one CPU: the profile maps lcores 0 and 1 onto CPU 0 (--lcores 0@0,1@0)"
fi
if [[ $DRY_RUN -eq 1 ]]; then
    printf '+ sed s/0000:00:08.0/%s/g%s %q > %q\n' "$pci" "${lcore_sed:+;$lcore_sed}" "$REPO/dpdk-config/virtio.toml" "$ETC/virtio.toml"
    printf '+ write %q (MS_DATA_NIC=%s MS_DPDK_DRIVER=%s MS_HUGEPAGES=%s)\n' "$ETC/metricsstream.env" "$pci" "$DRIVER" "$PAGES"
else
    sed "s/0000:00:08.0/$pci/g${lcore_sed:+;$lcore_sed}" "$REPO/dpdk-config/virtio.toml" >"$ETC/virtio.toml"
    cat >"$ETC/metricsstream.env" <<EOF
# written by vagrant/provision.sh; read by metricsstream.service
MS_DATA_NIC=$pci
MS_DPDK_DRIVER=$DRIVER
MS_HUGEPAGES=$PAGES
EOF
fi
if [[ $ROLE == appliance ]]; then
    run install -m 0644 "$REPO/scripts/metricsstream.service" /etc/systemd/system/metricsstream.service
    if [[ -d /run/systemd/system ]]; then run systemctl daemon-reload; fi
fi

log "done: $ROLE, data NIC $pci"
case $ROLE in
    appliance) cat >&2 <<EOF
    next: metricsstream replay/serve with --profile $ETC/virtio.toml (docs/operations.md);
          as a service: write $ETC/metricsstream.toml, then systemctl enable --now metricsstream
EOF
    ;;
    generator) cat >&2 <<EOF
    next: metricsstream gen-pcap --kind udp-line --out /tmp/load.pcap, then the dpdk-testpmd
          replay command in docs/operations.md with -a $pci
EOF
    ;;
esac
