#!/usr/bin/env bash
# Sets up and runs the whole test suite: formatting, clippy (warnings are
# errors), unit and property tests, and the integration tests that run real
# DPDK (--no-huge virtual ports), real processes and real peers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --release --all-targets --quiet -- -D warnings

step "ops scripts: shellcheck, Vagrantfile, bind-nic/provision dry runs, hugepages, testpmd commands"
cargo build --release --quiet
MS_BIN=target/release/metricsstream bash tests/ops/run.sh

step "loom models of the lock-free limiter (own target dir: --cfg loom rebuilds everything)"
RUSTFLAGS="--cfg loom" cargo test --release --quiet --lib limit::loom_tests --target-dir target/loom

step "fuzz: every cargo-fuzz target for 20 s from its seeds (HTTP, line protocol, JSON, StatsD)"
bash scripts/fuzz.sh --seconds 20

step "cargo test (unit, property, fuzz-seed, DPDK, veth/curl/wrk, VictoriaMetrics and crash tests)"
cargo test --release --workspace

# Boots two VMs (TCG where there is no KVM: tens of minutes), so only on request.
if [ "${MS_VM:-0}" = 1 ]; then
    step "VM smoke test: the Vagrant pair on libvirt, walk-through on virtio-net PCI NICs (scripts/vm-smoke.sh)"
    bash scripts/setup.sh --vm
    bash scripts/vm-smoke.sh
else
    step "VM smoke test: SKIPPED, not run and not counted as passed (MS_VM=1 runs scripts/vm-smoke.sh)"
fi
