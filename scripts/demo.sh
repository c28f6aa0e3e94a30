#!/usr/bin/env bash
# The README's first command: exorun end to end on one machine, two processes.
#
# Builds what it needs (the guest apps and their toolchain, the exorun CLI), starts
# `exorun serve` hosting math-provider on loopback, then `exorun run`s a composition in which
# math-consumer reaches math-provider remotely, a relay links locally and remotely,
# logger-client uses the logging system and two kv-clients share one kv store. Prints every
# result, stops the server with Ctrl-C (SIGINT) and exits non-zero if any expected line is
# missing or the server did not stop cleanly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d)"
SERVER_PID=""

cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

say "building the guest apps (installs the wasm toolchain on first use)"
bash scripts/build_apps.sh

# EXORUN_BIN: a binary just built by the caller (the test script passes the one `cargo test`
# built, whose feature set differs from a plain `cargo build` and would rebuild wasmtime).
if [ -n "${EXORUN_BIN:-}" ]; then
    EXORUN="$EXORUN_BIN"
else
    say "building the exorun CLI"
    cargo build --locked -p exorun-cli
    EXORUN="$ROOT/target/debug/exorun"
fi

say "inspecting math-consumer"
"$EXORUN" inspect fixtures/math-consumer.wasm

say "starting: exorun serve examples/provider.toml --listen tcp://127.0.0.1:0"
"$EXORUN" serve examples/provider.toml --listen tcp://127.0.0.1:0 \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
ADDRESS=""
for _ in $(seq 1 300); do
    ADDRESS="$(grep -o 'tcp://[0-9.]*:[0-9]*' "$WORK/server.out" 2>/dev/null | head -n 1 || true)"
    [ -n "$ADDRESS" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; fail "the server exited early"; }
    sleep 0.1
done
[ -n "$ADDRESS" ] || fail "the server did not report its address within 30 s"
cat "$WORK/server.out"

say "running: exorun run examples/composition.toml --peer provider=$ADDRESS"
RUST_LOG="${RUST_LOG:-exorun::guest=info,exorun_bind::remote=debug}" \
    "$EXORUN" run examples/composition.toml --peer "provider=$ADDRESS" | tee "$WORK/run.out"

say "stopping the server (SIGINT)"
kill -INT "$SERVER_PID"
STATUS=0
wait "$SERVER_PID" || STATUS=$?
SERVER_PID=""
cat "$WORK/server.err"
[ "$STATUS" -eq 0 ] || fail "the server exited with status $STATUS"

say "checking the results"
for expected in \
    'remote-calc: "10 + 5 = 15"' \
    'relayed-calc: "10 + 5 = 15"' \
    'logger: "Done"' \
    'kv-a: "KV result: bar"' \
    'kv-b: "KV result: bar"'; do
    grep -qxF "$expected" "$WORK/run.out" || fail "missing line: $expected"
    printf 'ok  %s\n' "$expected"
done
printf '\ndemo: all links worked: system (logging, kv), local (relay), remote (TCP)\n'
