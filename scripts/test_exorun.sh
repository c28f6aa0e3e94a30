#!/usr/bin/env bash
# The one test command (README). On a fresh machine it installs what is missing (Debian's
# nats-server for the NATS tests; through scripts/build_apps.sh: Debian's rustc-web/rust-web-src
# for the guest fallback, the componentize tool), builds the guest apps, then runs formatting, lints, every test, the layering check, the
# docs, packaging and downstream checks, and the demo, so the README's first command stays true.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's line says how many seconds the run had taken when it began.
step() { printf '\n== %s (at %ss)\n' "$*" "$SECONDS"; }

# A clean run peaks at about 7 GiB under target/ and apps/target/ (measured 2026-12-02: 6.6 GiB,
# 22 minutes on 2 cores; the `du` line at the end prints it). No incremental artifacts: a one-off
# build never reads them, and in a long-lived target/ they grew as large as everything else.
export CARGO_INCREMENTAL=0
NEED_GIB=8

step "disk (a clean run needs about $NEED_GIB GiB under target/)"
mkdir -p target
free_kib=$(df -Pk target | awk 'NR == 2 { print $4 }')
free_gib=$((free_kib / 1048576))
echo "free beside target/: $free_gib GiB"
if [ "$free_gib" -lt "$NEED_GIB" ]; then
    echo "warning: only $free_gib GiB free and a clean run needs about $NEED_GIB GiB; a build may" >&2
    echo "fail with 'No space left on device' (free space: cargo clean, or rm -rf target/)" >&2
fi

step "toolchain"
for tool in "cargo fmt" "cargo clippy"; do
    if ! $tool --version >/dev/null 2>&1; then
        echo "missing: '$tool' (install it with: rustup component add ${tool#cargo })" >&2
        exit 1
    fi
done

step "nats-server and curl (the NATS tests run a real server; the HTTP tests a real client)"
missing=""
command -v nats-server >/dev/null 2>&1 || missing="$missing nats-server"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
if [ -n "$missing" ]; then
    echo "installing Debian's$missing"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    command -v apt-get >/dev/null || { echo "no apt-get to install$missing: install them (nats-server 2.9+)" >&2; exit 1; }
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing
fi
nats-server --version
curl --version | head -1

step "guest apps"
bash scripts/build_apps.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "layering"
bash scripts/check_layers.sh

step "docs (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "packaging (every crate packages on its own)"
# --allow-dirty: this checks the manifests, not whether the working tree is committed.
cargo package --workspace --no-verify --offline --allow-dirty --locked

step "downstream (each stack builds alone, pulling in nothing of the other)"
bash scripts/check_downstream.sh

step "demo (the README's first command)"
# The exorun binary `cargo test` just built for the CLI tests; building it again with plain
# `cargo build` would use another feature set and recompile wasmtime.
EXORUN_BIN="$PWD/target/debug/exorun" bash scripts/demo.sh

step "footprint"
du -sh target apps/target
