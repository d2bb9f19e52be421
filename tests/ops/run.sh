#!/usr/bin/env bash
# Operations tests: what a machine without a VM or a spare NIC can check.
#
#   bash tests/ops/run.sh            # all (needs root for netns and hugepages)
#   MS_OPS_SKIP_DPDK=1 bash tests/ops/run.sh   # skip the dpdk-testpmd runs
#
# - Vagrantfile syntax and evaluation (ruby), shellcheck of every script
# - bind-nic.sh: refuses this host's default-route interface (dry-run only);
#   full decision logic in a throwaway network namespace against a fake sysfs
#   tree describing a virtio NIC at 0000:00:08.0
# - vagrant/provision.sh --dry-run: refusal, and the full command list (also
#   --binary, the prebuilt-binary path the VM smoke test uses)
# - build-box.sh / vm-smoke.sh argument checks (scripts/vm-smoke.sh itself boots
#   the VMs: MS_VM=1 scripts/test.sh)
# - hugepages/setup.sh: really reserves (current + 64 pages), mounts, reports,
#   persists into a temporary root, then restores the previous state
# - profiles parse as TOML; systemd unit verifies
# - dpdk-testpmd: vhost-user <-> virtio_user with the profile's flags (no-huge,
#   and hugepages + --single-file-segments), and the pcap replay generator
#   command of docs/operations.md (net_pcap -> net_null / tx_pcap, MAC rewrite)
# - when target/release/metricsstream exists (or $MS_BIN): both profiles load
#   and run in `metricsstream replay` (virtio.toml on real hugepages)
# - scripts/bench.sh --quick (loadgen in-process and writer parts only; MS_OPS_SKIP_BENCH=1 skips)
# Never touches a real interface: binding is only ever run with --dry-run.
# Last line: "N passed, N failed"; exit status 1 when anything failed.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO" || exit 1
TMP=$(mktemp -d /tmp/ms-ops-test.XXXXXX)
NS=ms-ops-test-$$
PASS=0
FAIL=0
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$NS" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); printf 'ok - %s\n' "$1"; }
not_ok() { FAIL=$((FAIL + 1)); printf 'not ok - %s\n' "$1"; [[ -z ${2:-} ]] || { printf '%s\n' "$2" | tail -n 25 | while IFS= read -r l; do printf '    # %s\n' "$l"; done; }; }
skip() { printf 'skip - %s (%s)\n' "$1" "$2"; }
# check NAME CONDITION-STATUS [DETAIL]
check() { if [[ $2 -eq 0 ]]; then ok "$1"; else not_ok "$1" "${3:-}"; fi; }
has() { grep -qF -- "$2" <<<"$1"; }

# ---------------------------------------------------------------- static checks
out=$(bash scripts/build-box.sh --size 2 2>&1); rc=$?
[[ $rc -eq 1 ]] && has "$out" "--size must be"; check "build-box.sh rejects a disk under 3 GiB before doing anything" $? "$out"
out=$(bash scripts/vm-smoke.sh --packets 0 2>&1); rc=$?
[[ $rc -eq 1 ]] && has "$out" "--packets must be > 0" && [[ $(bash scripts/vm-smoke.sh --help | head -n1) == *"Boot the Vagrant pair"* ]]
check "vm-smoke.sh: --help, argument check before touching libvirt" $? "$out"
out=$(sed -n '/MS_VM:-0/,/^fi/p' scripts/test.sh); rc=$?
has "$out" "bash scripts/vm-smoke.sh" && has "$out" "SKIPPED, not run and not counted as passed"
check "test.sh runs vm-smoke.sh only with MS_VM=1 and reports the skip" $? "$out"
if command -v ruby >/dev/null; then
    out=$(ruby -c vagrant/Vagrantfile 2>&1); check "ruby -c vagrant/Vagrantfile" $? "$out"
    # Evaluate the Vagrantfile against a recording stub of Vagrant's config API.
    cat >"$TMP/stub.rb" <<'EOF'
class Rec
  def initialize(path) @path = path end
  def method_missing(n, *a, **kw, &b)
    $log << "#{@path}.#{n} #{a.inspect} #{kw.inspect}"
    c = Rec.new("#{@path}.#{n}"); b.call(c) if b; c
  end
  def respond_to_missing?(*) true end
end
$log = []
module Vagrant; def self.configure(_v) yield Rec.new("config") end; end
load ARGV[0]
puts $log
EOF
    out=$(ruby "$TMP/stub.rb" vagrant/Vagrantfile 2>&1); rc=$?
    { [[ $rc -eq 0 ]] && has "$out" 'define ["appliance"]' && has "$out" 'define ["generator"]' \
        && [[ $(grep -c ':nic_type=>"virtio"' <<<"$out") -eq 2 ]] \
        && [[ $(grep -c '"--nicpromisc2", "allow-all"' <<<"$out") -eq 2 ]] \
        && has "$out" 'nic_model_type= ["virtio"]' && has "$out" 'ip=>"192.168.56.10"'; }
    check "Vagrantfile evaluates: 2 VMs, virtio data NIC, promisc, libvirt virtio" $? "$out"
    { has "$out" 'driver= ["kvm"]' && has "$out" 'cpu_mode= ["host-passthrough"]' \
        && ! has "$out" 'provision ["file"]' && has "$out" 'cpus= [2]' && ! has "$out" 'graphics_type='; }
    check "Vagrantfile default (KVM users): kvm, host-passthrough, 2 vCPUs, cargo build in the guest" $? "$out"
    out=$(MS_LIBVIRT_DRIVER=qemu MS_CPUS=1 MS_MEMORY=1536 MS_GENERATOR_MEMORY=1024 MS_HOST_BINARY="$REPO/vagrant/Vagrantfile" \
          MS_SERIAL_LOG_DIR=/tmp/ms-serial MS_BOX=metricsstream/debian12 ruby "$TMP/stub.rb" vagrant/Vagrantfile 2>&1); rc=$?
    { [[ $rc -eq 0 ]] && [[ $(grep -c 'driver= \["qemu"\]' <<<"$out") -eq 2 ]] && has "$out" 'cpu_mode= ["host-model"]' \
        && has "$out" 'cpus= [1]' && has "$out" 'memory= [1536]' && has "$out" 'memory= [1024]' \
        && [[ $(grep -c 'provision \["file"\]' <<<"$out") -eq 2 ]] && has "$out" '--binary /tmp/metricsstream' \
        && has "$out" '/tmp/ms-serial/appliance.log' && has "$out" 'graphics_type= ["none"]' \
        && has "$out" 'box= ["metricsstream/debian12"]'; }
    check "Vagrantfile with MS_LIBVIRT_DRIVER=qemu (TCG): 1 vCPU, host binary, serial log, no display" $? "$out"
    out=$(MS_HOST_BINARY=/nonexistent/metricsstream ruby "$TMP/stub.rb" vagrant/Vagrantfile 2>&1); rc=$?
    [[ $rc -ne 0 ]] && has "$out" "MS_HOST_BINARY=/nonexistent/metricsstream: no such file"
    check "Vagrantfile rejects a missing MS_HOST_BINARY" $? "$out"
else
    skip "Vagrantfile checks" "ruby not installed (apt-get install -y ruby)"
fi

if command -v shellcheck >/dev/null; then
    mapfile -t scripts < <(find scripts hugepages vagrant tests/ops -name '*.sh' -type f 2>/dev/null | sort)
    for s in "${scripts[@]}"; do
        out=$(shellcheck -S warning "$s" 2>&1); check "shellcheck -S warning $s" $? "$out"
    done
else
    skip "shellcheck" "not installed (apt-get install -y shellcheck)"
fi

if python3 -c 'import tomllib' 2>/dev/null; then
    for f in dpdk-config/virtio.toml dpdk-config/vhost-user.toml; do
        out=$(python3 - "$f" <<'EOF' 2>&1
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
assert all(isinstance(a, str) for a in c["eal"]["args"]), "eal.args must be strings"
for k in ("port_id", "rx_queues", "rx_desc", "tx_desc", "mbufs", "mbuf_cache"):
    assert isinstance(c["port"][k], int), k
EOF
        ); check "profile $f parses ([eal] args, [port] fields)" $? "$out"
    done
else
    skip "profile TOML parse" "python3 >= 3.11 (tomllib) missing"
fi

if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze verify scripts/metricsstream.service 2>&1)
    rest=$(grep -v 'is not executable: No such file or directory' <<<"$out" | grep -v '^$')
    [[ -z $rest ]]; check "systemd-analyze verify metricsstream.service (only uninstalled binaries missing)" $? "$out"
fi

# ------------------------------------------------- bind-nic on this real host
defdev=$(ip -4 route show default 2>/dev/null | grep -oE '\bdev [^ ]+' | awk '{ print $2; exit }')
[[ -n $defdev ]] || defdev=$(ip -6 route show default 2>/dev/null | grep -oE '\bdev [^ ]+' | awk '{ print $2; exit }')
if [[ -n $defdev ]]; then
    out=$(bash scripts/bind-nic.sh --dry-run "$defdev" 2>&1); rc=$?
    [[ $rc -eq 4 ]] && has "$out" "REFUSED: $defdev" && ! grep -q '^+ ' <<<"$out"
    check "bind-nic.sh --dry-run $defdev (default route) refused, exit 4, no commands" $? "$out"
    out=$(bash scripts/bind-nic.sh --dry-run --force "$defdev" 2>&1); rc=$?
    [[ $rc -eq 4 ]]; check "bind-nic.sh --force cannot override the default-route refusal" $? "$out"
    defpci=$(basename "$(readlink -f "/sys/class/net/$defdev/device")" 2>/dev/null)
    [[ $defpci =~ ^virtio ]] && defpci=$(basename "$(dirname "$(readlink -f "/sys/class/net/$defdev/device")")")
    if [[ $defpci =~ ^[0-9a-f]{4}: ]]; then
        out=$(bash scripts/bind-nic.sh --dry-run "$defpci" 2>&1); rc=$?
        [[ $rc -eq 4 ]] && has "$out" "REFUSED"
        check "bind-nic.sh --dry-run $defpci (PCI of $defdev) refused" $? "$out"
    fi
    out=$(bash scripts/bind-nic.sh --candidates 2>&1); rc=$?
    [[ $rc -eq 0 ]] && ! grep -q "^$defdev " <<<"$out"
    check "bind-nic.sh --candidates never lists $defdev" $? "$out"
    out=$(MS_ETC=$TMP/etc bash vagrant/provision.sh appliance --no-setup --no-build --dry-run --data-nic "$defdev" 2>&1); rc=$?
    [[ $rc -ne 0 ]] && has "$out" "REFUSED" && ! has "$out" "dpdk-devbind.py --bind"
    check "provision.sh --dry-run refuses $defdev and prints no bind command" $? "$out"
else
    skip "default-route refusal on this host" "no default route here (covered in the namespace below)"
fi

# ------------------------- bind-nic/provision logic in a namespace + fake sysfs
if [[ $EUID -eq 0 ]] && ip netns add "$NS" 2>/dev/null; then
    F=$TMP/sys
    dev=$F/devices/pci0000:00/0000:00:08.0
    mkdir -p "$dev/virtio3/net/ens8" "$F/bus/pci/devices" "$F/bus/pci/drivers/virtio-pci" \
        "$F/bus/pci/drivers/vfio-pci" "$F/class/net" "$F/kernel/iommu_groups" \
        "$F/kernel/mm/hugepages/hugepages-2048kB"
    ln -s ../../../devices/pci0000:00/0000:00:08.0 "$F/bus/pci/devices/0000:00:08.0"
    ln -s ../../../bus/pci/drivers/virtio-pci "$dev/driver"
    ln -s ../../devices/pci0000:00/0000:00:08.0/virtio3/net/ens8 "$F/class/net/ens8"
    ln -s ../../../virtio3 "$dev/virtio3/net/ens8/device"
    echo 52:54:00:56:00:10 >"$dev/virtio3/net/ens8/address"
    echo 0x020000 >"$dev/class"
    echo pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00 >"$dev/modalias"
    for k in nr_hugepages free_hugepages resv_hugepages surplus_hugepages; do echo 0 >"$F/kernel/mm/hugepages/hugepages-2048kB/$k"; done
    # Kernel side of the fake NIC: a veth (dummy/vlan modules may be missing);
    # ens9 exists in the fake sysfs without a device link, like any virtual NIC.
    ip -n "$NS" link add ens8 type veth peer name ens8p
    mkdir -p "$F/devices/virtual/net/ens9"; ln -s ../../devices/virtual/net/ens9 "$F/class/net/ens9"
    S=$TMP/state
    nsrun() { ip netns exec "$NS" env -u SSH_CONNECTION MS_SYSFS="$F" MS_STATE_DIR="$S" MS_ETC="$TMP/etc" "$@"; }

    out=$(nsrun bash scripts/bind-nic.sh --dry-run --driver vfio-pci ens8 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "+ modprobe vfio enable_unsafe_noiommu_mode=1" && has "$out" "+ modprobe vfio-pci" \
        && has "$out" "+ echo virtio-pci | tee $S/0000:00:08.0.driver" \
        && has "$out" "+ dpdk-devbind.py --bind=vfio-pci 0000:00:08.0" && [[ $(tail -n1 <<<"$out") == 0000:00:08.0 ]]
    check "ns: down virtio NIC without addresses: noiommu vfio-pci, record driver, bind, print PCI" $? "$out"
    [[ ! -e $S ]]; check "ns: --dry-run wrote no state" $? "$(ls -R "$S" 2>&1)"

    out=$(nsrun bash scripts/bind-nic.sh --dry-run --driver uio_pci_generic 00:08.0 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "+ modprobe uio_pci_generic" && has "$out" "--bind=uio_pci_generic 0000:00:08.0"
    check "ns: short PCI address + uio_pci_generic" $? "$out"

    out=$(nsrun bash scripts/bind-nic.sh --dry-run ens8 2>&1); rc=$?
    [[ $rc -eq 0 ]] && grep -qE -- '--bind=(vfio-pci|uio_pci_generic) 0000:00:08.0' <<<"$out"
    check "ns: --driver auto picks vfio-pci or uio_pci_generic" $? "$out"

    # No IOMMU: vfio-pci only where the kernel's vfio has the no-IOMMU mode
    # (Debian 12's kernel has not: vfio-pci's probe fails with -22 there).
    mkdir -p "$F/module/vfio/parameters"; echo N >"$F/module/vfio/parameters/enable_unsafe_noiommu_mode"
    out=$(nsrun bash scripts/bind-nic.sh --dry-run ens8 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "+ echo Y | tee $F/module/vfio/parameters/enable_unsafe_noiommu_mode" \
        && has "$out" "--bind=vfio-pci 0000:00:08.0"
    check "ns: --driver auto, no IOMMU, vfio with no-IOMMU mode: vfio-pci, mode switched on" $? "$out"
    rm -r "$F/module"
    if modinfo -p vfio 2>/dev/null | grep -q '^enable_unsafe_noiommu_mode:'; then
        skip "ns: --driver auto without the no-IOMMU mode" "this host's vfio module has the mode"
    else
        out=$(nsrun bash scripts/bind-nic.sh --dry-run ens8 2>&1); rc=$?
        [[ $rc -eq 0 ]] && has "$out" "has no no-IOMMU mode (CONFIG_VFIO_NOIOMMU): using uio_pci_generic" \
            && has "$out" "--bind=uio_pci_generic 0000:00:08.0" && ! has "$out" "modprobe vfio"
        check "ns: --driver auto, no IOMMU, vfio without no-IOMMU mode: uio_pci_generic" $? "$out"
    fi

    out=$(nsrun bash scripts/bind-nic.sh --dry-run ens9 2>&1); rc=$?
    [[ $rc -eq 3 ]] && has "$out" "not a PCI device"; check "ns: virtual interface rejected (exit 3)" $? "$out"

    out=$(nsrun bash scripts/bind-nic.sh --candidates 2>/dev/null); rc=$?
    [[ $rc -eq 0 && $out == "ens8 0000:00:08.0 virtio-pci" ]]; check "ns: --candidates lists ens8" $? "$out"

    ip -n "$NS" link set ens8 up
    ip -n "$NS" addr add 198.18.0.5/24 dev ens8
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --driver vfio-pci ens8 2>&1); rc=$?
    [[ $rc -eq 5 ]] && has "$out" "REFUSED: ens8 is up with addresses 198.18.0.5/24" && ! grep -q '^+ ' <<<"$out"
    check "ns: up with addresses refused without --force (exit 5)" $? "$out"
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --force --driver vfio-pci ens8 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "+ ip addr flush dev ens8" && has "$out" "+ ip link set dev ens8 down" \
        && has "$out" "--bind=vfio-pci 0000:00:08.0"
    check "ns: --force flushes, downs and binds" $? "$out"

    out=$(nsrun env SSH_CONNECTION="198.18.0.9 50022 198.18.0.5 22" bash scripts/bind-nic.sh --dry-run --force ens8 2>&1); rc=$?
    [[ $rc -eq 4 ]] && has "$out" "SSH session"; check "ns: \$SSH_CONNECTION interface refused even with --force (exit 4)" $? "$out"

    # A live TCP session on port 22 (what ss sees), IPv4 and v4-mapped IPv6.
    ip -n "$NS" link set lo up
    ip -n "$NS" link set ens8p up
    ip -n "$NS" addr add 198.18.0.6/24 dev ens8p
    ip netns exec "$NS" python3 -c '
import socket, time
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 22)); s.listen(1); c, _ = s.accept(); time.sleep(30)' &
    PIDS+=("$!")
    ip netns exec "$NS" python3 -c '
import socket, time
for _ in range(100):
    try:
        c = socket.create_connection(("198.18.0.5", 22), source_address=("198.18.0.6", 0)); break
    except OSError:
        time.sleep(0.1)
time.sleep(30)' &
    PIDS+=("$!")
    n=0; while [[ $n -lt 100 && -z $(ip netns exec "$NS" ss -tnH state established '( sport = :22 )') ]]; do sleep 0.1; n=$((n + 1)); done
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --force ens8 2>&1); rc=$?
    [[ $rc -eq 4 ]] && has "$out" "carries an SSH session to 198.18.0.5:22"
    check "ns: interface with an established :22 session (ss) refused even with --force (exit 4)" $? \
        "$out$(printf '\n'; ip netns exec "$NS" ss -tnH state established)"
    kill "${PIDS[@]: -2}" 2>/dev/null; wait "${PIDS[@]: -2}" 2>/dev/null
    ip -n "$NS" addr flush dev ens8p; ip -n "$NS" link set ens8p down

    ip -n "$NS" route add default via 198.18.0.1 dev ens8
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --force ens8 2>&1); rc=$?
    [[ $rc -eq 4 ]] && has "$out" "default route"; check "ns: IPv4 default-route interface refused with --force (exit 4)" $? "$out"
    ip -n "$NS" route del default
    ip -n "$NS" addr flush dev ens8

    ip -n "$NS" -6 addr add 2001:db8::5/64 dev ens8 nodad
    ip -n "$NS" -6 route add default via 2001:db8::1 dev ens8
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --force ens8 2>&1); rc=$?
    [[ $rc -eq 4 ]] && has "$out" "ip -6 route"; check "ns: IPv6 default-route interface refused (exit 4)" $? "$out"
    ip -n "$NS" -6 route del default; ip -n "$NS" -6 addr flush dev ens8

    ip -n "$NS" link add br-ms type bridge
    ip -n "$NS" link set ens8 master br-ms
    ip -n "$NS" link set br-ms up
    ip -n "$NS" addr add 198.18.1.5/24 dev br-ms
    ip -n "$NS" route add default via 198.18.1.1 dev br-ms
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --force ens8 2>&1); rc=$?
    [[ $rc -eq 4 ]] && has "$out" "lower device or member of br-ms"
    check "ns: member of a default-route bridge refused (exit 4)" $? "$out"
    ip -n "$NS" link del br-ms
    ip -n "$NS" link set ens8 down

    out=$(nsrun bash vagrant/provision.sh appliance --data-mac 525400560010 --no-build --dry-run 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "data NIC: ens8 (MAC 525400560010)" \
        && has "$out" "tee $F/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages" \
        && has "$out" "80-metricsstream-hugepages.conf" \
        && has "$out" "--bind=" && has "$out" "0000:00:08.0" \
        && has "$out" "+ install -m 0755 $REPO/scripts/bind-nic.sh /usr/local/lib/metricsstream/bind-nic.sh" \
        && has "$out" "+ sed s/0000:00:08.0/0000:00:08.0/g" \
        && has "$out" "+ install -m 0644 $REPO/scripts/metricsstream.service /etc/systemd/system/metricsstream.service" \
        && grep -qE '^\+ (bash .*scripts/setup.sh|apt-get update)' <<<"$out"
    check "ns: provision.sh appliance --dry-run finds the NIC by MAC and prints every step" $? "$out"
    [[ ! -e $TMP/etc && ! -e $S ]]; check "ns: provision.sh --dry-run changed nothing" $? "$(find "$TMP" -maxdepth 2 | head)"

    out=$(nsrun bash vagrant/provision.sh generator --no-setup --dry-run 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "+ cargo build --release" && has "$out" "data NIC: looking for candidates" \
        && ! has "$out" "metricsstream.service"
    check "ns: provision.sh generator --dry-run picks the only candidate, builds, no unit" $? "$out"

    out=$(nsrun env OMP_NUM_THREADS=1 bash vagrant/provision.sh generator --binary /tmp/ms-prebuilt --dry-run 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "+ install -m 0755 /tmp/ms-prebuilt /usr/local/bin/metricsstream" \
        && ! has "$out" "cargo build" && ! has "$out" "scripts/setup.sh" && has "$out" "runtime packages" \
        && has "$out" 's/"-l", "0-1"/"--lcores", "0@0,1@0"/'
    check "ns: provision.sh --binary installs the prebuilt binary, no toolchain; one CPU maps both lcores" $? "$out"

    # As if bound: driver -> vfio-pci, recorded kernel driver virtio-pci.
    rm "$dev/driver"; ln -s ../../../bus/pci/drivers/vfio-pci "$dev/driver"
    mkdir -p "$S"; echo virtio-pci >"$S/0000:00:08.0.driver"
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --driver vfio-pci 0000:00:08.0 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "already bound to vfio-pci" && ! grep -q '^+ ' <<<"$out"
    check "ns: already bound is a no-op (service ExecStartPre re-run)" $? "$out"
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --driver auto 0000:00:08.0 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "already bound to DPDK driver vfio-pci" && ! grep -q '^+ ' <<<"$out"
    check "ns: --driver auto keeps whichever DPDK driver is bound" $? "$out"
    out=$(nsrun bash scripts/bind-nic.sh --dry-run --unbind 0000:00:08.0 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "+ dpdk-devbind.py --bind=virtio-pci 0000:00:08.0"
    check "ns: --unbind restores the recorded kernel driver" $? "$out"
    ip netns del "$NS"
else
    skip "namespace tests" "need root and 'ip netns'"
fi

# ------------------------------------------------------- hugepages, for real
HP=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [[ $EUID -eq 0 && -w $HP ]]; then
    old=$(<"$HP")
    was_mounted=0
    awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { f = 1 } END { exit !f }' /proc/mounts && was_mounted=1
    want=$((old + 64))
    out=$(bash hugepages/setup.sh --pages "$want" 2>&1); rc=$?
    [[ $rc -eq 0 && $(<"$HP") -eq $want ]] && awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { f = 1 } END { exit !f }' /proc/mounts
    check "hugepages/setup.sh --pages $want reserves and mounts /dev/hugepages" $? "$out"
    out=$(bash hugepages/setup.sh --pages "$want" 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "already reserved" && has "$out" "already mounted"
    check "hugepages/setup.sh is idempotent" $? "$out"
    out=$(bash hugepages/setup.sh --status 2>&1); rc=$?
    [[ $rc -eq 0 ]] && grep -qE "2048kB +total=$want " <<<"$out" && has "$out" "/dev/hugepages (" && grep -qE '^  node0 ' <<<"$out"
    check "hugepages/setup.sh --status shows the pool, per node, and the mount" $? "$out"
    out=$(bash hugepages/setup.sh --pages "$want" --no-mount --persist --root "$TMP/root" 2>&1); rc=$?
    [[ $rc -eq 0 ]] && grep -qx "vm.nr_hugepages = $want" "$TMP/root/etc/sysctl.d/80-metricsstream-hugepages.conf"
    check "hugepages/setup.sh --persist writes sysctl.d" $? "$out"
    out=$(bash hugepages/setup.sh --pages "$want" --mount /mnt/ms-huge --persist --root "$TMP/root" --dry-run 2>&1); rc=$?
    [[ $rc -eq 0 ]] && has "$out" "tee -a $TMP/root/etc/fstab" && has "$out" "+ mount -t hugetlbfs -o pagesize=2M nodev /mnt/ms-huge" \
        && [[ ! -e /mnt/ms-huge ]]
    check "hugepages/setup.sh --dry-run: fstab line for a custom mount, nothing done" $? "$out"
    out=$(bash hugepages/setup.sh --pages "$old" --no-mount 2>&1); rc=$?
    [[ $rc -eq 0 && $(<"$HP") -eq $old ]]; check "hugepages restored to $old" $? "$out"
    if [[ $was_mounted -eq 0 ]] && [[ -z $(ls -A /dev/hugepages 2>/dev/null) ]]; then umount /dev/hugepages; fi
else
    skip "hugepages reservation" "needs root and $HP"
fi

# ---------------------------------------------------- dpdk-testpmd verifications
# wait_for_socket PATH: up to 10 s.
wait_for_socket() { local n=0; while [[ $n -lt 100 ]]; do [[ -S $1 ]] && return 0; sleep 0.1; n=$((n + 1)); done; return 1; }
# vhost_pair NAME "VHOST EAL" "VIRTIO EAL": vhost side rxonly, virtio_user side txonly,
# both in the background; stop both once the vhost side has received (at most 45 s,
# EAL start-up with --no-huge -m 512 is slow on a loaded machine).
vhost_pair() {
    local name=$1 vh=$2 vu=$3 sock=$TMP/$1.sock vpid upid rx n=0
    rm -f "$sock"
    # shellcheck disable=SC2086
    timeout -s INT 90 dpdk-testpmd $vh --no-pci -l 0-1 --main-lcore 1 --vdev "net_vhost0,iface=$sock,queues=1" \
        -- --total-num-mbufs=2048 --forward-mode=rxonly --stats-period 1 >"$TMP/$name-vhost.log" 2>&1 &
    vpid=$!; PIDS+=("$vpid")
    if ! wait_for_socket "$sock" && ! wait_for_socket "$sock" && ! wait_for_socket "$sock"; then
        kill -INT "$vpid"; wait "$vpid"; not_ok "$name: vhost socket" "$(tail "$TMP/$name-vhost.log")"; return
    fi
    # shellcheck disable=SC2086
    timeout -s INT 80 dpdk-testpmd $vu --no-pci -l 0-1 --main-lcore 0 --vdev "net_virtio_user0,path=$sock,queues=1" \
        -- --total-num-mbufs=2048 --forward-mode=txonly --stats-period 1 >"$TMP/$name-virtio.log" 2>&1 &
    upid=$!; PIDS+=("$upid")
    while [[ $n -lt 90 ]] && ! grep -qE 'RX-packets: +[1-9]' "$TMP/$name-vhost.log"; do sleep 0.5; n=$((n + 1)); done
    sleep 1
    kill -INT "$upid" 2>/dev/null; wait "$upid" 2>/dev/null
    kill -INT "$vpid" 2>/dev/null; wait "$vpid" 2>/dev/null
    rx=$(grep -A1 'Forward statistics for port 0' "$TMP/$name-vhost.log" | grep -oE 'RX-packets: +[0-9]+' | awk '{ print $2 }')
    [[ ${rx:-0} -gt 0 ]]; check "$name: vhost[$vh] <- virtio_user[$vu] received ${rx:-0} packets" $? \
        "$(grep -iE 'fail|error|cannot' "$TMP/$name-vhost.log" "$TMP/$name-virtio.log" | grep -v 'errors: 0' | head)"
}

if [[ -n ${MS_OPS_SKIP_DPDK:-} ]]; then
    skip "dpdk-testpmd runs" "MS_OPS_SKIP_DPDK set"
elif ! command -v dpdk-testpmd >/dev/null; then
    skip "dpdk-testpmd runs" "dpdk-testpmd missing (apt-get install -y dpdk-dev)"
else
    vhost_pair vhost-nohuge "--no-huge -m 512 --no-shconf" "--no-huge -m 512 --no-shconf"
    if [[ $EUID -eq 0 && -w $HP ]]; then
        old=$(<"$HP"); was_mounted=0
        awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { f = 1 } END { exit !f }' /proc/mounts && was_mounted=1
        if bash hugepages/setup.sh --pages $((old + 320)) >/dev/null 2>&1; then
            vhost_pair vhost-hugepages "--in-memory -m 256" "--in-memory --single-file-segments -m 256"
        else
            not_ok "vhost-hugepages: could not reserve $((old + 320)) pages"
        fi
        bash hugepages/setup.sh --pages "$old" --no-mount >/dev/null 2>&1
        if [[ $was_mounted -eq 0 ]] && [[ -z $(ls -A /dev/hugepages 2>/dev/null) ]]; then umount /dev/hugepages; fi
    fi

    # The generator command: a pcap source port forwarding into the "NIC" port.
    if python3 - "$TMP/load.pcap" <<'EOF'
import struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
out = open(sys.argv[1], "wb")
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
for i in range(256):
    payload = b"cpu,host=h%03d usage=1.5\n" % i
    udp = struct.pack("!HHHH", 40000 + i, 8089, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                     bytes([192, 168, 56, 11]), bytes([192, 168, 56, 10]))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    frame = bytes.fromhex("525400560010" "525400560011") + b"\x08\x00" + ip + udp
    out.write(struct.pack("<IIII", 0, i, len(frame), len(frame)) + frame)
EOF
    then
        timeout -s INT 8 dpdk-testpmd --no-huge -m 512 --no-shconf --no-pci -l 0-1 \
            --vdev net_null0,no-rx=1 --vdev "net_pcap0,rx_pcap=$TMP/load.pcap,infinite_rx=1" \
            -- --forward-mode=io --no-flush-rx --total-num-mbufs=4096 --stats-period 1 >"$TMP/gen.log" 2>&1
        tx=$(grep -A2 'Forward statistics for port 0' "$TMP/gen.log" | grep -oE 'TX-packets: +[0-9]+' | awk '{ print $2 }')
        pps=$(grep -oE 'Tx-pps: +[0-9]+' "$TMP/gen.log" | awk '$2 > 0 { v = $2 } END { print v + 0 }')
        [[ ${tx:-0} -gt 100000 ]]; check "generator: net_pcap(infinite_rx) -> port 0 io forwarding sent ${tx:-0} packets (~$pps pps)" $? "$(tail -20 "$TMP/gen.log")"

        timeout -s INT 8 dpdk-testpmd --no-huge -m 512 --no-shconf --no-pci -l 0-1 \
            --vdev "net_pcap1,tx_pcap=$TMP/out.pcap" --vdev "net_pcap0,rx_pcap=$TMP/load.pcap" \
            -- --forward-mode=mac --eth-peer=0,52:54:00:56:00:10 --no-flush-rx --total-num-mbufs=4096 \
            --stats-period 1 >"$TMP/gen2.log" 2>&1
        if command -v tcpdump >/dev/null; then
            n=$(tcpdump -nr "$TMP/out.pcap" 2>/dev/null | wc -l)
            dst=$(tcpdump -enr "$TMP/out.pcap" 2>/dev/null | awk 'NR == 1 { print $4 }')
            [[ $n -eq 256 && $dst == 52:54:00:56:00:10, ]]
            check "generator: --forward-mode=mac --eth-peer rewrites dst MAC, all 256 frames out (got $n, dst $dst)" $? "$(tail -20 "$TMP/gen2.log")"
        else
            skip "generator MAC rewrite" "tcpdump missing"
        fi
    else
        skip "generator" "python3 missing"
    fi
fi

# ------------------------------------- the profiles in the appliance binary itself
BIN=${MS_BIN:-$REPO/target/release/metricsstream}
if [[ -n ${MS_OPS_SKIP_DPDK:-} ]]; then
    skip "profiles in metricsstream replay" "MS_OPS_SKIP_DPDK set"
elif [[ ! -x $BIN ]]; then
    skip "profiles in metricsstream replay" "no $BIN (cargo build --release first)"
elif ! "$BIN" gen-pcap --kind udp-line --packets 4096 --out "$TMP/ms.pcap" >/dev/null 2>&1; then
    not_ok "metricsstream gen-pcap"
else
    out=$(timeout -s INT 60 "$BIN" replay --pcap "$TMP/ms.pcap" --duration 1 --profile dpdk-config/vhost-user.toml 2>&1)
    grep -qE '^replay: .* [1-9][0-9]* packets' <<<"$out"
    check "metricsstream replay accepts dpdk-config/vhost-user.toml (--no-huge)" $? "$out"
    if [[ $EUID -eq 0 && -w $HP ]]; then
        old=$(<"$HP"); was_mounted=0
        awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { f = 1 } END { exit !f }' /proc/mounts && was_mounted=1
        bash hugepages/setup.sh --pages $((old + 512)) >/dev/null 2>&1
        before=$(find /dev/hugepages -maxdepth 1 -type f | wc -l)
        out=$(timeout -s INT 60 "$BIN" replay --pcap "$TMP/ms.pcap" --duration 1 --profile dpdk-config/virtio.toml 2>&1)
        after=$(find /dev/hugepages -maxdepth 1 -type f | wc -l)
        grep -qE '^replay: .* [1-9][0-9]* packets' <<<"$out" && [[ $after -eq $before ]]
        check "metricsstream replay accepts dpdk-config/virtio.toml on hugepages, --in-memory leaves no files" $? "$out"
        bash hugepages/setup.sh --pages "$old" --no-mount >/dev/null 2>&1
        if [[ $was_mounted -eq 0 ]] && [[ -z $(ls -A /dev/hugepages 2>/dev/null) ]]; then umount /dev/hugepages; fi
    fi
fi

# ------------------------------- scripts/bench.sh smoke (loadgen in-process + writer)
# The short parts only (~1 min): the wrk/VictoriaMetrics, testpmd and limiter parts
# are exercised by a full `scripts/bench.sh` run, not here.
if [[ -n ${MS_OPS_SKIP_DPDK:-} || -n ${MS_OPS_SKIP_BENCH:-} ]]; then
    skip "scripts/bench.sh --quick" "MS_OPS_SKIP_DPDK or MS_OPS_SKIP_BENCH set"
elif ! command -v python3 >/dev/null; then
    skip "scripts/bench.sh --quick" "python3 missing"
else
    out=$(timeout 300 bash scripts/bench.sh --quick --skip replay,wrk,limiter --out "$TMP/bench" 2>&1)
    rc=$?
    json=$(find "$TMP/bench" -name '20*Z.json' 2>/dev/null | head -1)
    [[ $rc -eq 0 && -n $json ]] && python3 - "$json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
rows = {(h["client"], h["connections"]) for h in run["http"]}
assert ("loadgen (ring pair)", 100) in rows and ("loadgen (ring pair)", 10000) in rows, rows
assert all(h["socket_errors"] == 0 and h["req_per_s"] > 0 for h in run["http"]), run["http"]
by = {c["name"]: c for c in run["comparisons"]}
assert by["durable writer vs dd"]["ours"] > 0 and by["durable writer vs dd"]["peer"] > 0, by
assert by["limiter vs governor, 10k uniform keys, 1 thread(s)"]["skipped"] == "--skip", by
PY
    [[ $? -eq 0 ]] && head -c 5 "$TMP/bench/latest.svg" | grep -q '<svg' && grep -q 'loadgen (ring pair) | 10000 |' "$TMP/bench/latest.md"
    check "scripts/bench.sh --quick: loadgen at 100 and 10,000 connections without socket errors, writer vs dd, JSON + Markdown + SVG" $? "$out"
fi

echo "$PASS passed, $FAIL failed"
[[ $FAIL -eq 0 ]]
