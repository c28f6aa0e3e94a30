#!/usr/bin/env bash
# Sequential remote calls measured from outside, as a user would: `exorun serve` hosts
# math-provider, and `exorun run` makes a guest (math-loop) call its remote `add` N times in a
# row, over TCP loopback and over a Unix socket. Prints microseconds per call (the whole run,
# start-up included, divided by N; with N = 100,000 start-up is under 1%).
#
#   bash scripts/bench_remote.sh [N] [EXORUN_BINARY]
#
# Builds the release CLI and the guest apps first when no binary is given. BENCHMARKS.md
# records a run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CALLS="${1:-100000}"
EXORUN="${2:-}"
WORK="$(mktemp -d)"
SERVER=""
cleanup() {
    [ -n "$SERVER" ] && kill -INT "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "$EXORUN" ]; then
    bash "$ROOT/scripts/build_apps.sh" >/dev/null
    cargo build --quiet --release --locked -p exorun-cli --manifest-path "$ROOT/Cargo.toml"
    EXORUN="$ROOT/target/release/exorun"
fi

cat >"$WORK/provider.toml" <<EOF
[apps]
math-provider = "$ROOT/fixtures/math-provider.wasm"
[instances.math]
app = "math-provider"
export = true
EOF
cat >"$WORK/loop.toml" <<EOF
[apps]
math-loop = "$ROOT/fixtures/math-loop.wasm"
[peers]
provider = "tcp://127.0.0.1:1"
[instances.loop]
app = "math-loop"
limits = { fuel_per_call = 1000000000000 }
links = { "exorun:test/math" = { remote = "provider", target = "math" } }
EOF

"$EXORUN" serve "$WORK/provider.toml" --listen tcp://127.0.0.1:0 --listen "unix://$WORK/p.sock" \
    >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER=$!
for _ in $(seq 1 100); do
    grep -q "serving" "$WORK/serve.out" 2>/dev/null && break
    sleep 0.1
done
TCP="$(grep -o 'tcp://[0-9.]*:[0-9]*' "$WORK/serve.out" | head -n 1)"

for address in "$TCP" "unix://$WORK/p.sock"; do
    started="$(date +%s%N)"
    "$EXORUN" run "$WORK/loop.toml" --peer "provider=$address" \
        --invoke "loop.exorun:test/looper#add-many($CALLS)" >/dev/null
    ended="$(date +%s%N)"
    kind="${address%%://*}"
    awk -v ns="$((ended - started))" -v n="$CALLS" -v kind="$kind" \
        'BEGIN { printf "%-5s %8.1f us per sequential remote call (%d calls)\n", kind, ns / n / 1000, n }'
done
