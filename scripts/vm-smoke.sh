#!/usr/bin/env bash
# Boot the Vagrant pair (vagrant/Vagrantfile, libvirt) from a clean state and
# run docs/operations.md's walk-through on the virtio-net PCI data NICs, then
# destroy everything it created.
#
#   scripts/vm-smoke.sh [--keep] [--packets N] [--log FILE]
#
#   --keep      leave the VMs running at the end (for `vagrant ssh`); by
#               default `vagrant destroy -f` runs whatever happened
#   --packets   frames the generator replays (default 2000)
#   --log       transcript file (default /tmp/ms-vm-smoke-DATE.log)
#
# Checks, each reported PASS/FAIL in the summary (exit 1 on any FAIL):
#   1. both VMs come up and are provisioned (vagrant up --provider=libvirt)
#   2. bind-nic.sh bound each VM's data NIC (PCI address in
#      /etc/metricsstream/data-nic, on vfio-pci or uio_pci_generic) and refuses
#      the management NIC eth0 (exit 4, default route / SSH session)
#   3. hugepages reserved (MS_HUGEPAGES) and hugetlbfs mounted at /dev/hugepages
#   4. appliance `metricsstream rx --profile /etc/metricsstream/virtio.toml`
#      while the generator's dpdk-testpmd replays a gen-pcap file once into its
#      data NIC (--forward-mode=mac to the appliance's MAC): the generator's
#      TX-packets equal the packets in the pcap, the appliance received exactly
#      those frames, all classified udp, and its stats line shows Mpps; rx
#      exits 0 (every balance of its report held)
#   5. appliance `metricsstream serve` on the data NIC (198.18.0.1); the
#      generator gives its data NIC back to the kernel (bind-nic.sh --unbind),
#      takes 198.18.0.2/24 and POSTs a line with curl: 204; after serve stops,
#      `metricsstream dump` of the appliance's log holds that line; serve
#      exits 0 (every balance held, mbufs included)
#   6. vagrant destroy -f leaves no domain, network or volume of this run
# rx's and serve's exit statuses in the appliance are printed under the summary
# (beside the checks, not among them).
#
# Without hardware virtualisation (no vmx/svm flag) the VMs run under QEMU's TCG
# (MS_LIBVIRT_DRIVER=qemu, chosen automatically): slow, and every Mpps figure
# it prints says nothing about speed. Each VM gets 1 vCPU (MS_CPUS), the
# appliance 1536 MiB and the generator 1024 MiB (MS_MEMORY,
# MS_GENERATOR_MEMORY), 256 hugepages (MS_HUGEPAGES); QEMU runs at nice 19.
# The binary is the host's release build (MS_HOST_BINARY, default
# target/release/metricsstream; the host must be Debian 12 with libdpdk 22.11
# like the box); the box is MS_BOX (default metricsstream/debian12, built by
# scripts/build-box.sh when missing). When libvirtd is not running and there is
# no systemd (a container), the script starts virtlogd and libvirtd at nice 19
# and stops them (by PID) at the end, then removes the empty LIBVIRT_* iptables
# and ip6tables chains that daemon made for this run's networks (libvirt never
# removes them; chains that existed before the run stay). Every wait is bounded (MS_VM_TIMEOUT
# seconds for `vagrant up`, default 3600).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KEEP=0
PACKETS=2000
LOG=/tmp/ms-vm-smoke-$(date -u +%Y%m%dT%H%M%SZ).log

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --keep) KEEP=1; shift ;;
        --packets) PACKETS=${2:?--packets needs a number}; shift 2 ;;
        --log) LOG=${2:?--log needs a file}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; echo "vm-smoke: unknown argument: $1" >&2; exit 1 ;;
    esac
done
[[ $PACKETS =~ ^[0-9]+$ && $PACKETS -gt 0 ]] || { echo "vm-smoke: --packets must be > 0" >&2; exit 1; }
[[ $EUID -eq 0 ]] || { echo "vm-smoke: run as root (libvirt's system instance)" >&2; exit 1; }

exec > >(tee -a "$LOG") 2>&1
START=$(date +%s)
say() { printf '\n[%5ds] == %s\n' $(($(date +%s) - START)) "$*"; }

WORK=$(mktemp -d /tmp/ms-vm-smoke.XXXXXX)
export VAGRANT_CWD=$REPO/vagrant
export VAGRANT_DOTFILE_PATH=$WORK/dotvagrant      # this run's state, not the repo's
export MS_BOX=${MS_BOX:-metricsstream/debian12}
export MS_HOST_BINARY=${MS_HOST_BINARY:-$REPO/target/release/metricsstream}
export MS_CPUS=${MS_CPUS:-1}
export MS_MEMORY=${MS_MEMORY:-1536}
export MS_GENERATOR_MEMORY=${MS_GENERATOR_MEMORY:-1024}
export MS_HUGEPAGES=${MS_HUGEPAGES:-256}
export MS_BOOT_TIMEOUT=${MS_BOOT_TIMEOUT:-1800}
export MS_SERIAL_LOG_DIR=$WORK/serial
VM_TIMEOUT=${MS_VM_TIMEOUT:-3600}
if [[ -z ${MS_LIBVIRT_DRIVER:-} ]]; then
    if grep -qwE 'vmx|svm' /proc/cpuinfo && [[ -w /dev/kvm ]]; then MS_LIBVIRT_DRIVER=kvm; else MS_LIBVIRT_DRIVER=qemu; fi
fi
export MS_LIBVIRT_DRIVER
APP_MAC=52:54:00:56:00:10
VIRSH=(virsh -c qemu:///system)
mkdir -p "$MS_SERIAL_LOG_DIR"; chmod 0777 "$MS_SERIAL_LOG_DIR" "$WORK"

declare -a RESULTS=()
# rx and serve exit 0 only when every balance of their report held (mbufs included).
exit_check() {   # exit_check NAME STATUS OUTPUT
    if [[ $2 == 0 ]]; then
        result PASS "appliance: $1 exited 0 (every balance of its report held)"
    else
        result FAIL "appliance: $1 exited 0 (every balance of its report held)" "exit status ${2:-unknown}: $(grep -m1 '^error:' <<<"$3" || true)"
    fi
}
FAILED=0
result() {   # result PASS|FAIL NAME [DETAIL]
    RESULTS+=("$(printf '%-4s %s%s' "$1" "$2" "${3:+ ($3)}")")
    [[ $1 == PASS ]] || FAILED=1
    printf -- '-> %s %s%s\n' "$1" "$2" "${3:+ ($3)}"
}

STARTED_PIDS=()
RENICE_PID=""
DESTROYED=0
NETS_BEFORE=""
POOL_BEFORE=1
VOLS_BEFORE=""
FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)
# libvirt's network driver creates its private chains (filter LIBVIRT_INP/OUT/
# FWI/FWO/FWX, nat and mangle LIBVIRT_PRT, IPv4 and IPv6) and the jumps to them
# at the first network start, and neither net-destroy nor stopping the daemon
# removes them: empty chains were left behind after every run. Listed before
# the daemon starts, so that only the chains this run made are removed.
fw_chains() {   # "TOOL TABLE CHAIN" for each LIBVIRT_* chain
    local tool table
    for tool in iptables ip6tables; do
        command -v "$tool" >/dev/null || continue
        for table in filter nat mangle; do
            "$tool" -w -t "$table" -S 2>/dev/null | awk -v t="$tool $table" '$1 == "-N" && $2 ~ /^LIBVIRT_/ { print t, $2 }'
        done
    done
}
CHAINS_BEFORE=$(fw_chains)
# remove_fw_chains: the LIBVIRT_* chains that did not exist before this run
# and are empty again (a rule in one belongs to a network someone else still
# runs: left), with the jumps to them; 1 if an empty one could not be removed.
remove_fw_chains() {
    local tool table chain rc=0 removed=()
    local -a rule
    while read -r tool table chain; do
        [[ -n $chain ]] || continue
        grep -qxF "$tool $table $chain" <<<"$CHAINS_BEFORE" && continue
        if [[ $("$tool" -w -t "$table" -S "$chain" 2>/dev/null | wc -l) -ne 1 ]]; then
            echo "vm-smoke: $tool -t $table $chain has rules (another libvirt network?): left"
            continue
        fi
        while read -r -a rule; do
            rule[0]=-D
            "$tool" -w -t "$table" "${rule[@]}" || rc=1
        done < <("$tool" -w -t "$table" -S | awk -v c="$chain" '$1 == "-A" && $(NF - 1) == "-j" && $NF == c')
        if "$tool" -w -t "$table" -X "$chain"; then removed+=("$tool/$table/$chain"); else rc=1; fi
    done < <(fw_chains)
    [[ ${#removed[@]} -eq 0 ]] || echo "vm-smoke: removed the firewall chains libvirt made for this run: ${removed[*]}"
    [[ $rc -eq 0 ]] || echo "vm-smoke: could not remove every empty LIBVIRT_* chain of this run (see above)"
    return "$rc"
}
cleanup() {
    local rc=$? p alive
    [[ -z $RENICE_PID ]] || kill "$RENICE_PID" 2>/dev/null || true
    if [[ $KEEP -eq 0 ]]; then
        if [[ $DESTROYED -eq 0 ]]; then
            say "vagrant destroy -f"
            timeout 900 vagrant destroy -f || echo "vm-smoke: vagrant destroy failed"
        fi
        # vagrant-libvirt removes the networks it created; remove what is left
        # of this run only: networks that did not exist before it.
        for net in metricsstream-data vagrant-libvirt; do
            if ! grep -qx "$net" <<<"$NETS_BEFORE" && "${VIRSH[@]}" net-info "$net" >/dev/null 2>&1; then
                "${VIRSH[@]}" net-destroy "$net" >/dev/null 2>&1 || true
                "${VIRSH[@]}" net-undefine "$net" >/dev/null 2>&1 || true
                echo "vm-smoke: removed leftover network $net"
            fi
        done
        # The box's copy in the storage pool (vagrant-libvirt uploads it at the
        # first up and keeps it), and the pool, when this run created them.
        if [[ -n ${POOL:-} ]]; then
            for v in $("${VIRSH[@]}" vol-list "$POOL" 2>/dev/null | awk 'NR > 2 && $1 { print $1 }'); do
                grep -qx "$v" <<<"$VOLS_BEFORE" && continue
                "${VIRSH[@]}" vol-delete --pool "$POOL" "$v" >/dev/null 2>&1 && echo "vm-smoke: removed volume $v"
            done
            if [[ $POOL_BEFORE -eq 0 ]] && "${VIRSH[@]}" pool-info "$POOL" >/dev/null 2>&1; then
                "${VIRSH[@]}" pool-destroy "$POOL" >/dev/null 2>&1 || true
                "${VIRSH[@]}" pool-undefine "$POOL" >/dev/null 2>&1 && echo "vm-smoke: removed storage pool $POOL"
            fi
        fi
        for p in "${STARTED_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
        if [[ ${#STARTED_PIDS[@]} -gt 0 ]]; then
            # The chains only go once the daemon that made them is gone: a
            # running libvirtd creates them once and later networks expect them.
            for _ in $(seq 30); do
                alive=0
                for p in "${STARTED_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
                [[ $alive -eq 1 ]] || break
                sleep 1
            done
            if [[ $alive -eq 1 ]]; then
                echo "vm-smoke: libvirtd/virtlogd still running 30 s after SIGTERM: LIBVIRT_* chains left"
                [[ $rc -ne 0 ]] || rc=1
            else
                remove_fw_chains || { [[ $rc -ne 0 ]] || rc=1; }
            fi
        fi
        # libvirt turns IP forwarding on for its NAT network: put it back.
        [[ $(cat /proc/sys/net/ipv4/ip_forward) == "$FORWARD_BEFORE" ]] || echo "$FORWARD_BEFORE" >/proc/sys/net/ipv4/ip_forward
    else
        say "--keep: VMs left running (VAGRANT_CWD=$VAGRANT_CWD VAGRANT_DOTFILE_PATH=$VAGRANT_DOTFILE_PATH vagrant ssh appliance)"
    fi
    [[ $KEEP -eq 1 ]] || rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "metricsstream VM smoke test: driver $MS_LIBVIRT_DRIVER, box $MS_BOX, binary $MS_HOST_BINARY"
date -u '+started %Y-%m-%d %H:%M:%S UTC'
[[ $MS_LIBVIRT_DRIVER == kvm ]] || echo "note: QEMU TCG emulation (no vmx/svm): Mpps figures below say nothing about speed"
for tool in vagrant virsh ssh; do
    command -v "$tool" >/dev/null || { echo "vm-smoke: $tool missing: bash scripts/setup.sh --vm"; exit 1; }
done
[[ -x $MS_HOST_BINARY ]] || { echo "vm-smoke: $MS_HOST_BINARY missing: cargo build --release (or set MS_HOST_BINARY)"; exit 1; }
# A stripped copy goes into the VMs: 5 MiB instead of 30 through an emulated
# CPU's ssh (the debug info is of no use there).
if command -v strip >/dev/null && strip -o "$WORK/metricsstream" "$MS_HOST_BINARY"; then
    export MS_HOST_BINARY=$WORK/metricsstream
fi
vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt \
    || { echo "vm-smoke: the vagrant-libvirt plugin is missing (Debian package vagrant-libvirt)"; exit 1; }

# libvirt: use the running daemon, or start one (containers have no systemd).
if ! "${VIRSH[@]}" version >/dev/null 2>&1; then
    if [[ -d /run/systemd/system ]]; then
        systemctl start libvirtd.service virtlogd.service
    else
        say "starting virtlogd and libvirtd (nice 19; stopped at the end)"
        nice -n 19 virtlogd -d -p "$WORK/virtlogd.pid"
        nice -n 19 libvirtd -d -p "$WORK/libvirtd.pid"
        for _ in $(seq 30); do "${VIRSH[@]}" version >/dev/null 2>&1 && break; sleep 1; done
        STARTED_PIDS+=("$(<"$WORK/libvirtd.pid")" "$(<"$WORK/virtlogd.pid")")
    fi
    "${VIRSH[@]}" version >/dev/null || { echo "vm-smoke: libvirtd did not come up"; exit 1; }
fi
NETS_BEFORE=$("${VIRSH[@]}" net-list --all --name 2>/dev/null || true)
POOL=${MS_LIBVIRT_POOL:-default}
"${VIRSH[@]}" pool-info "$POOL" >/dev/null 2>&1 || POOL_BEFORE=0
VOLS_BEFORE=$("${VIRSH[@]}" vol-list "$POOL" 2>/dev/null | awk 'NR > 2 && $1 { print $1 }' || true)

# The box, built from Debian packages when Vagrant does not have it.
if ! vagrant box list 2>/dev/null | grep -q "^$MS_BOX .*libvirt"; then
    say "box $MS_BOX missing: scripts/build-box.sh"
    timeout 3600 bash "$REPO/scripts/build-box.sh" --name "$MS_BOX"
fi

# A clean state: no VM of this Vagrantfile left from an earlier run.
for name in appliance generator; do
    if "${VIRSH[@]}" dominfo "metricsstream_$name" >/dev/null 2>&1; then
        echo "vm-smoke: domain metricsstream_$name exists (an earlier run with --keep?): remove it first:"
        echo "  virsh -c qemu:///system destroy metricsstream_$name; virsh -c qemu:///system undefine metricsstream_$name --remove-all-storage"
        KEEP=1; exit 1
    fi
done

# QEMU at nice 19: libvirtd started above passes its niceness on; a daemon
# started elsewhere does not, so renice this run's QEMU processes as they appear.
(
    end=$(($(date +%s) + VM_TIMEOUT))
    while [[ $(date +%s) -lt $end ]]; do
        for f in /run/libvirt/qemu/metricsstream_appliance.pid /run/libvirt/qemu/metricsstream_generator.pid; do
            [[ -r $f ]] && renice -n 19 -p "$(<"$f")" >/dev/null 2>&1
        done
        sleep 5
    done
) &
RENICE_PID=$!

say "vagrant up --provider=libvirt (both VMs; bounded by ${VM_TIMEOUT}s)"
up_rc=0
# (the box upload's progress counter rewrites one line a thousand times: dropped)
timeout "$VM_TIMEOUT" vagrant up --provider=libvirt 2>&1 | sed -u 's/\x1b\[KProgress: [0-9]*%//g' || up_rc=$?
if [[ $up_rc -ne 0 ]]; then
    result FAIL "vagrant up and provisioning" "exit $up_rc; serial consoles: $MS_SERIAL_LOG_DIR"
    tail -n 30 "$MS_SERIAL_LOG_DIR"/*.log 2>/dev/null || true
else
    result PASS "vagrant up and provisioning of both VMs" "$(($(date +%s) - START)) s since start"
fi

if [[ $up_rc -eq 0 ]]; then
    vagrant ssh-config >"$WORK/ssh_config"
    # on VM CMD...: run CMD (a shell string) as root in VM, bounded.
    on() { local vm=$1; shift; timeout "${T:-300}" ssh -F "$WORK/ssh_config" -o ConnectTimeout=60 -o LogLevel=ERROR "$vm" sudo bash -c "$(printf '%q' "$*")"; }
    # wait_stats_line NAME PATTERN: until the appliance's /tmp/NAME.log has a
    # stats line (EAL and port are up: rx prints "... Mpps ...", serve
    # "[ t s] conns open ..."), at most 120 polls; fails if the process exits.
    wait_stats_line() {
        for _ in $(seq 120); do
            T=60 on appliance "grep -qE '$2' /tmp/$1.log" 2>/dev/null && return 0
            T=60 on appliance "kill -0 \"\$(cat /tmp/$1.pid)\"" 2>/dev/null || return 1
            sleep 5
        done
        return 1
    }

    # 2 + 3: binding and hugepages, on both VMs.
    declare -A PCI=()
    for vm in appliance generator; do
        say "$vm: data NIC binding, management NIC refusal, hugepages"
        out=$(on "$vm" 'pci=$(cat /etc/metricsstream/data-nic); echo "pci=$pci";
            echo "driver=$(basename "$(readlink /sys/bus/pci/devices/$pci/driver)")";
            echo "vendor_device=$(cat /sys/bus/pci/devices/$pci/vendor):$(cat /sys/bus/pci/devices/$pci/device)";
            dpdk-devbind.py --status-dev net;
            grep -h "CONFIG_VFIO_NOIOMMU" /boot/config-"$(uname -r)" || echo "CONFIG_VFIO_NOIOMMU: not in /boot/config-$(uname -r)";
            /usr/local/lib/metricsstream/bind-nic.sh --dry-run eth0; echo "mgmt_rc=$?";
            echo "hp_total=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)";
            awk '"'"'$3 == "hugetlbfs" { print "hp_mount=" $2 }'"'"' /proc/mounts' 2>&1) || true
        printf '%s\n' "$out"
        pci=$(sed -n 's/^pci=//p' <<<"$out"); drv=$(sed -n 's/^driver=//p' <<<"$out")
        PCI[$vm]=$pci
        if [[ $pci =~ ^[0-9a-f]{4}: && $drv =~ ^(vfio-pci|uio_pci_generic)$ ]]; then
            result PASS "$vm: data NIC $pci bound to $drv" "$(sed -n 's/^vendor_device=//p' <<<"$out")"
        else
            result FAIL "$vm: data NIC bound to a DPDK driver" "pci='$pci' driver='$drv'"
        fi
        if grep -q '^mgmt_rc=4$' <<<"$out" && grep -q 'REFUSED: eth0' <<<"$out"; then
            result PASS "$vm: bind-nic.sh refuses the management NIC eth0" "exit 4"
        else
            result FAIL "$vm: bind-nic.sh refuses the management NIC eth0" "$(grep -E '^mgmt_rc=|REFUSED' <<<"$out" | tr '\n' ' ')"
        fi
        if grep -q "^hp_total=$MS_HUGEPAGES$" <<<"$out" && grep -q '^hp_mount=/dev/hugepages$' <<<"$out"; then
            result PASS "$vm: $MS_HUGEPAGES hugepages, hugetlbfs on /dev/hugepages"
        else
            result FAIL "$vm: hugepages" "$(grep -E '^hp_' <<<"$out" | tr '\n' ' ')"
        fi
    done

    # 4: rx on the appliance, testpmd replaying a pcap once on the generator.
    say "generator: gen-pcap --kind udp-line --packets $PACKETS"
    on generator "metricsstream gen-pcap --kind udp-line --packets $PACKETS --out /tmp/load.pcap" || true
    say "appliance: metricsstream rx --profile /etc/metricsstream/virtio.toml (background)"
    # (the inner sh is the process that gets SIGINT; the outer one keeps its exit status)
    on appliance 'rm -f /tmp/rx.json /tmp/rx.log /tmp/rx.pid /tmp/rx.rc; setsid sh -c '"'"'sh -c "echo \$\$ >/tmp/rx.pid; exec metricsstream rx --profile /etc/metricsstream/virtio.toml --duration 1800 --report /tmp/rx.json"; echo $? >/tmp/rx.rc'"'"' >/tmp/rx.log 2>&1 </dev/null &
        for i in $(seq 30); do [ -s /tmp/rx.pid ] && break; sleep 1; done; cat /tmp/rx.pid' || true
    ready=0; wait_stats_line rx ' Mpps ' && ready=1
    T=60 on appliance 'cat /tmp/rx.log' | head -n 40 || true
    if [[ $ready -eq 1 ]]; then
        say "generator: dpdk-testpmd replays /tmp/load.pcap once into ${PCI[generator]} (MAC rewrite to $APP_MAC)"
        gen_lcores="-l 0-1"; [[ $MS_CPUS -ge 2 ]] || gen_lcores="--lcores 0@0,1@0"
        # testpmd forwards until SIGINT; the pcap port runs dry after one pass.
        # It is stopped once port 0's TX count has stayed put for 3 stats periods.
        T=900 on generator "rm -f /tmp/testpmd.log; setsid sh -c 'echo \$\$ >/tmp/testpmd.pid; exec dpdk-testpmd $gen_lcores --in-memory -a ${PCI[generator]} --vdev net_pcap0,rx_pcap=/tmp/load.pcap -- --forward-mode=mac --eth-peer=0,$APP_MAC --no-flush-rx --total-num-mbufs=$((PACKETS + 8192)) --stats-period 5' >/tmp/testpmd.log 2>&1 </dev/null &
            last=-1; still=0
            for i in \$(seq 72); do
                sleep 5
                kill -0 \$(cat /tmp/testpmd.pid) 2>/dev/null || break
                n=\$(grep -A6 'NIC statistics for port 0' /tmp/testpmd.log | grep -o 'TX-packets: *[0-9]*' | tail -n1 | grep -o '[0-9]*\$')
                [[ -n \$n ]] || continue
                if [[ \$n -eq \$last && \$n -gt 0 ]]; then still=\$((still + 1)); else still=0; fi
                last=\$n; [[ \$still -lt 3 ]] || break
            done
            kill -INT \$(cat /tmp/testpmd.pid) 2>/dev/null
            for i in \$(seq 60); do kill -0 \$(cat /tmp/testpmd.pid) 2>/dev/null || break; sleep 1; done
            kill -KILL \$(cat /tmp/testpmd.pid) 2>/dev/null; true" || true
        gen_log=$(T=60 on generator 'cat /tmp/testpmd.log' || true)
        printf '%s\n' "$gen_log" | grep -vE '^\s*$' | tail -n 45
        # Final "Forward statistics for port 0" block: TX-packets of port 0.
        # (TX-dropped: the virtio TX ring was full; testpmd does not retry.)
        port0_field() { awk -v k="$1" '/Forward statistics for port 0/ { f = 1 } f && index($0, k) { for (i = 1; i <= NF; i++) if ($i == k) { print $(i + 1); exit } }' <<<"$gen_log"; }
        sent=$(port0_field TX-packets:)
        tx_dropped=$(port0_field TX-dropped:)
        port0=$(grep -m1 -oE 'Port 0: [0-9A-F:]{17}' <<<"$gen_log" || true)
        say "appliance: stop rx (SIGINT) and read its report"
        T=120 on appliance 'sleep 5; kill -INT "$(cat /tmp/rx.pid)"; for i in $(seq 60); do kill -0 "$(cat /tmp/rx.pid)" 2>/dev/null || break; sleep 1; done; echo "rx exit: $(tail -n 3 /tmp/rx.log)"; for i in $(seq 10); do [ -s /tmp/rx.rc ] && break; sleep 1; done; echo "rx exit status: $(cat /tmp/rx.rc 2>/dev/null || echo unknown)"' || true
        rx_log=$(T=60 on appliance 'cat /tmp/rx.log; echo "rx exit status: $(cat /tmp/rx.rc 2>/dev/null || echo unknown)"' || true)
        exit_check rx "$(sed -n 's/^rx exit status: //p' <<<"$rx_log")" "$rx_log"
        rx_json=$(T=60 on appliance 'cat /tmp/rx.json' || true)
        printf '%s\n' "$rx_log" | tail -n 12
        printf '%s\n' "$rx_json" | head -c 3000; echo
        received=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["rx_packets"])' <<<"$rx_json" 2>/dev/null || echo "")
        udp=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["classes"]["ipv4_udp"])' <<<"$rx_json" 2>/dev/null || echo "")
        echo "generator: $port0, port 0 TX-packets ${sent:-?} TX-dropped ${tx_dropped:-?}; appliance: received ${received:-?}, ipv4_udp ${udp:-?}"
        # Every pcap frame is accounted for: sent on the NIC or dropped at a
        # full TX ring (TCG drains the ring slowly); some must have been sent.
        if [[ -n $sent && -n $tx_dropped && $sent -gt 0 && $((sent + tx_dropped)) -eq $PACKETS ]]; then
            result PASS "generator: testpmd replayed the pcap onto its data NIC" "TX-packets $sent + TX-dropped $tx_dropped = $PACKETS"
        else
            result FAIL "generator: testpmd replayed the pcap onto its data NIC" "TX-packets '${sent:-?}' + TX-dropped '${tx_dropped:-?}' of $PACKETS"
        fi
        # Every generator frame is UDP line protocol; frames the host's bridge
        # sends on its own (if any) show up in the other classes and are listed.
        others=$(python3 -c 'import json,sys; c = json.loads(sys.stdin.read())["classes"]; print(" ".join(f"{k} {v}" for k, v in c.items() if k != "ipv4_udp" and v))' <<<"$rx_json" 2>/dev/null || true)
        if [[ -n $received && -n $sent && $udp == "$sent" && $received -ge $sent ]]; then
            result PASS "appliance: rx received and classified every frame sent" "$received frames, ipv4_udp $udp = generator TX-packets${others:+; also: $others}"
        else
            result FAIL "appliance: rx received and classified every frame sent" "received '${received:-?}', ipv4_udp '${udp:-?}', sent '${sent:-?}'"
        fi
        if grep -qE '\] rx +[0-9.]+ Mpps' <<<"$rx_log"; then
            result PASS "appliance: stats line with Mpps" "busiest second: $(awk '/\] rx +[0-9.]+ Mpps/ { for (i = 1; i < NF; i++) if ($(i + 1) == "Mpps" && $i + 0 >= best) { best = $i + 0; l = $0 } } END { print l }' <<<"$rx_log" | cut -c1-90)"
        else
            result FAIL "appliance: stats line with Mpps"
        fi
    else
        result FAIL "appliance: rx started on the data NIC" "no stats line; see rx.log above"
    fi

    # 5: serve on the appliance, curl from the generator's kernel stack.
    say "appliance: metricsstream serve on the data NIC (198.18.0.1, HTTP 8080)"
    on appliance 'rm -rf /var/tmp/ms-smoke; mkdir -p /var/tmp/ms-smoke;
        sed -e "s|^data_dir = .*|data_dir = \"/var/tmp/ms-smoke/data\"|" \
            -e "s|^max_connections_per_worker = .*|max_connections_per_worker = 64|" \
            -e "s|^max_body_bytes = .*|max_body_bytes = 1048576|" \
            -e "s|^body_memory_budget_bytes = .*|body_memory_budget_bytes = 16777216|" \
            -e "s|^capacity = .*|capacity = 1024|" -e "s|^neighbors = .*|neighbors = 64|" \
            /vagrant/dpdk-config/metricsstream.toml >/var/tmp/ms-smoke/smoke.toml;
        grep -nE "^(data_dir|ipv4|max_connections_per_worker|max_body_bytes|body_memory_budget_bytes|capacity|neighbors) " /var/tmp/ms-smoke/smoke.toml;
        rm -f /tmp/serve.pid /tmp/serve.rc;
        setsid sh -c '"'"'sh -c "echo \$\$ >/tmp/serve.pid; exec metricsstream serve --config /var/tmp/ms-smoke/smoke.toml --profile /etc/metricsstream/virtio.toml --duration 1800 --report /tmp/serve.json"; echo $? >/tmp/serve.rc'"'"' >/tmp/serve.log 2>&1 </dev/null &
        for i in $(seq 30); do [ -s /tmp/serve.pid ] && break; sleep 1; done; cat /tmp/serve.pid' || true
    ready=0; wait_stats_line serve '\] conns open ' && ready=1
    T=60 on appliance 'head -n 30 /tmp/serve.log' || true
    say "generator: data NIC back to the kernel (bind-nic.sh --unbind), 198.18.0.2/24, curl POST"
    line="vmsmoke,host=ms-generator,path=virtio value=42i $(date +%s)000000000"
    out=$(T=600 on generator "pci=\$(cat /etc/metricsstream/data-nic)
        /usr/local/lib/metricsstream/bind-nic.sh --unbind \$pci
        for i in \$(seq 30); do ls /sys/bus/pci/devices/\$pci/virtio*/net/ >/dev/null 2>&1 && break; sleep 1; done
        ifc=\$(ls /sys/bus/pci/devices/\$pci/virtio*/net/ | head -n1)
        echo \"kernel interface: \$ifc (\$(cat /sys/class/net/\$ifc/address))\"
        ip addr add 198.18.0.2/24 dev \$ifc; ip link set \$ifc up
        ip -br addr show dev \$ifc; ip route show dev \$ifc
        for i in \$(seq 20); do
            code=\$(curl -sS -m 30 -o /tmp/curl.out -w '%{http_code}' -X POST --data-binary '$line' http://198.18.0.1:8080/write) && break
            sleep 5
        done
        echo \"http_code=\$code\"; cat /tmp/curl.out; ip neigh show dev \$ifc" 2>&1) || true
    printf '%s\n' "$out"
    if [[ $ready -eq 1 ]] && grep -q '^http_code=204$' <<<"$out"; then
        result PASS "generator kernel stack: curl POST /write to the appliance's serve" "HTTP 204"
    else
        result FAIL "generator kernel stack: curl POST /write to the appliance's serve" "serve ready=$ready, $(grep '^http_code=' <<<"$out")"
    fi
    say "appliance: stop serve (SIGINT), dump the log"
    out=$(T=300 on appliance 'kill -INT "$(cat /tmp/serve.pid)"; for i in $(seq 90); do kill -0 "$(cat /tmp/serve.pid)" 2>/dev/null || break; sleep 1; done
        tail -n 6 /tmp/serve.log; for i in $(seq 10); do [ -s /tmp/serve.rc ] && break; sleep 1; done
        echo "serve exit status: $(cat /tmp/serve.rc 2>/dev/null || echo unknown)"
        echo "--- dump:"; metricsstream dump --data-dir /var/tmp/ms-smoke/data' 2>&1) || true
    exit_check serve "$(sed -n 's/^serve exit status: //p' <<<"$out")" "$out"
    printf '%s\n' "$out"
    if grep -qF "$line" <<<"$out"; then
        result PASS "appliance: metricsstream dump holds the POSTed record"
    else
        result FAIL "appliance: metricsstream dump holds the POSTed record" "looked for: $line"
    fi
fi

# 6: destroy, and check that nothing of this run is left.
if [[ $KEEP -eq 0 ]]; then
    say "vagrant destroy -f"
    timeout 900 vagrant destroy -f || true
    DESTROYED=1
    left=$("${VIRSH[@]}" list --all --name | grep -E '^metricsstream_(appliance|generator)$' || true)
    for net in metricsstream-data vagrant-libvirt; do
        if ! grep -qx "$net" <<<"$NETS_BEFORE" && "${VIRSH[@]}" net-info "$net" >/dev/null 2>&1; then left+=" network:$net"; fi
    done
    vols=$("${VIRSH[@]}" vol-list "$POOL" 2>/dev/null | awk '$1 ~ /^metricsstream_(appliance|generator)/ { print $1 }' || true)
    [[ -z $vols ]] || left+=" volumes:$vols"
    if [[ -z ${left// /} ]]; then
        result PASS "vagrant destroy -f: no domain, network or disk of this run left"
    else
        result FAIL "vagrant destroy -f: leftovers" "$left"
    fi
fi

say "summary"
elapsed=$(($(date +%s) - START))
printf '%s\n' "${RESULTS[@]}"
# Shown, not among the checks above: the checks are what each step must
# produce; a non-zero status here is the program's own verdict (e.g. its mbuf
# or lifecycle accounting at exit) and is reported beside them.
pass=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^PASS' || true)
fail=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^FAIL' || true)
printf 'vm-smoke: %d passed, %d failed in %d min %d s (driver %s); transcript %s\n' \
    "$pass" "$fail" $((elapsed / 60)) $((elapsed % 60)) "$MS_LIBVIRT_DRIVER" "$LOG"
[[ $FAILED -eq 0 && $fail -eq 0 ]]
