#!/usr/bin/env bash
# The HTTP bench: `exorun serve --http` beside `wasmtime serve`, the same trivial handler, on
# loopback. Installs wasmtime-cli 48.0.8 (the wasmtime exorun is built on; only its `run` and
# `serve` commands) into target/tools if it is not there, builds the guest apps, then runs
# `cargo bench -p exorun-cli --bench http` with WASMTIME pointing at it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VERSION=48.0.8
TOOLS="$ROOT/target/tools"
WASMTIME="$TOOLS/bin/wasmtime"
if ! "$WASMTIME" --version 2>/dev/null | grep -q "^wasmtime $VERSION\b"; then
    echo "bench_http: installing wasmtime-cli $VERSION into $TOOLS (serve only)"
    cargo install wasmtime-cli --version "$VERSION" --locked --root "$TOOLS" \
        --no-default-features \
        --features run,serve,component-model-async,cranelift,parallel-compilation,pooling-allocator
fi
bash scripts/build_apps.sh
WASMTIME="$WASMTIME" cargo bench -p exorun-cli --bench http
