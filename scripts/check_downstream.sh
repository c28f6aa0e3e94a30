#!/usr/bin/env bash
# Proves each stack of crates is usable on its own by another project (README, "Layers"):
# two throwaway crates outside the workspace, each depending on one stack only, must build, and
# their dependency trees must hold nothing of the other stack:
#   wire:  neorpc (default features) + exorun-transport  -> no wasmtime
#   wasm:  exorun-core + exorun-systems                  -> no neorpc, no exorun-transport
# The workspace's Cargo.lock pins the same versions; builds go to target/downstream, so a
# second run only relinks.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export CARGO_TARGET_DIR="$ROOT/target/downstream"

fail=0
downstream() { # name dependencies-toml main-rs required-name forbidden-names...
    local name="$1" deps="$2" main="$3" required="$4"; shift 4
    local dir="$WORK/$name"
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<EOF
[package]
name = "$name"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
$deps

[workspace]
EOF
    printf '%s\n' "$main" >"$dir/src/main.rs"
    cp "$ROOT/Cargo.lock" "$dir/Cargo.lock"
    local tree
    tree="$(cd "$dir" && cargo tree -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)"
    # The tree must show what the crate surely pulls in, or the checks below prove nothing.
    grep -qx "$required" <<<"$tree" || { echo "downstream: $name's tree lacks $required" >&2; fail=1; }
    for forbidden in "$@"; do
        if grep -qx "$forbidden" <<<"$tree"; then
            echo "downstream: $name pulls in $forbidden" >&2; fail=1
        fi
    done
    (cd "$dir" && cargo build --quiet) || { echo "downstream: $name does not build" >&2; fail=1; }
    echo "downstream: $name builds without $*"
}

downstream wire-only \
    "neorpc = { path = \"$ROOT/neorpc\" }
exorun-transport = { path = \"$ROOT/exorun-transport\" }" \
    'fn main() {
    let call = neorpc::frame::encode_call("t", "i#f", &[0x20, 0, 0, 0, 0], &[]).expect("frame");
    let address = exorun_transport::address::Address::parse("tcp://127.0.0.1:1").expect("address");
    println!("{} bytes for {address}", call.as_bytes().len());
}' \
    tokio wasmtime wasmtime-wasi exorun-core

downstream wasm-only \
    "exorun-core = { path = \"$ROOT/exorun-core\" }
exorun-systems = { path = \"$ROOT/exorun-systems\" }" \
    'use exorun_core::system::SystemComponent;
fn main() {
    let kv = exorun_systems::kv::Kv::new(exorun_systems::kv::Store::new());
    let runtime = exorun_core::Runtime::new().expect("runtime");
    println!("{:?} on runtime {}", kv.interfaces(), runtime.id());
}' \
    wasmtime neorpc exorun-transport

[ "$fail" = 0 ] && echo "downstream: ok"
exit "$fail"
