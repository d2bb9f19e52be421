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

step "cargo test (unit, property and DPDK integration tests)"
cargo test --release --workspace
