#!/usr/bin/env bash
# Installs what metricsstream needs on Debian 12 / Ubuntu 22.04+, idempotently:
# DPDK 22.11 (libdpdk-dev, dpdk, dpdk-dev), clang for bindgen, build tools,
# kernel clients for the veth tests, and a Rust toolchain if there is none.
#
#   scripts/setup.sh            runtime + build
#   scripts/setup.sh --tests    also what the test suite uses (shellcheck, ruby,
#                               victoria-metrics, prometheus + promtool, ...)
#   scripts/setup.sh --vm       also the Vagrant/libvirt/QEMU lab that
#                               scripts/vm-smoke.sh and scripts/build-box.sh use
# Uses sudo when not root.
set -euo pipefail

tests=0
vm=0
for a in "$@"; do
    case "$a" in
        --tests) tests=1 ;;
        --vm) vm=1 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown argument: $a" >&2; exit 2 ;;
    esac
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup.sh: run as root or install sudo" >&2; exit 1; }
    sudo=sudo
fi

packages=(libdpdk-dev dpdk dpdk-dev pkg-config clang libclang-dev build-essential python3
          ethtool iproute2 curl wrk)
if [ "$tests" = 1 ]; then
    packages+=(shellcheck ruby victoria-metrics prometheus zstd)  # zstd: compressed bodies in serve_veth
fi

if [ "$vm" = 1 ]; then
    packages+=(vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 qemu-utils dnsmasq-base
               mmdebstrap e2fsprogs dosfstools mtools syslinux syslinux-common fdisk rsync openssh-client)
    # qemu-system-x86 needs the qemu-utils of its own release; a newer one
    # (e.g. from backports) Breaks it: align it first.
    qsys=$(apt-cache policy qemu-system-x86 2>/dev/null | awk '/Candidate:/ { print $2 }')
    qutl=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    if [ -n "$qsys" ] && [ -n "$qutl" ] && [ "$qsys" != "$qutl" ]; then
        echo "setup.sh: qemu-utils $qutl -> $qsys (the version qemu-system-x86 needs)"
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends --allow-downgrades "qemu-utils=$qsys" >/dev/null
    fi
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup.sh: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

version=$(pkg-config --modversion libdpdk)
case "$version" in
    2[2-9].*|[3-9][0-9].*) ;;
    *) echo "setup.sh: libdpdk $version is too old; metricsstream needs DPDK >= 22.11 (Debian 12, Ubuntu 23.04+)" >&2; exit 1 ;;
esac

if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null; then
    echo "setup.sh: no Rust toolchain; installing rustup (stable)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if command -v rustup >/dev/null; then
    rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
fi
if [ "$tests" = 1 ] && ! python3 -c 'import influxdb_client, influxdb, influxdb_client_3' 2>/dev/null; then
    # The real InfluxDB 1.x, 2 and 3 clients (PyPI) write to serve in tests/serve_veth.rs.
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        influxdb-client influxdb influxdb3-python
fi
if [ "$tests" = 1 ] && ! command -v cargo-fuzz >/dev/null; then
    # scripts/fuzz.sh runs the libFuzzer targets in fuzz/ (on stable Rust).
    echo "setup.sh: installing cargo-fuzz"
    cargo install --quiet --locked cargo-fuzz
fi
echo "setup.sh: DPDK $version, $(cargo --version)"
