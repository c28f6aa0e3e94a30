#!/usr/bin/env bash
# Sequential remote calls measured from outside, as a user would: `exorun serve` hosts
# math-provider, and `exorun run` makes a guest (math-loop) call its remote `add` N times in a
# row, over TCP loopback and over a Unix socket. Prints microseconds per call (the whole run,
# start-up included, divided by N; with N = 100,000 start-up is under 1%), and beside them
# the floors of the same run: a blocking std ping-pong and a raw tokio one between two
# processes (`cargo bench -p exorun-transport --bench roundtrip -- --floor`).
#
#   bash scripts/bench_remote.sh [--against REV] [--rounds R] [N]
#
# With `--against REV` it also builds revision REV (a git worktree under target/, built in
# target/against/: two checkouts of one workspace give their crates the same artifact names,
# so they must not share a target directory; the first such build compiles every dependency
# once, later ones reuse them) and runs the two builds alternately, R rounds (3 by default), each
# build's client against its own server, then prints each build's best round and the ratio
# now / REV: run it before resolving anything that touches the call path. BENCHMARKS.md
# records runs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
AGAINST=""
ROUNDS=3
CALLS=100000
while [ $# -gt 0 ]; do
    case "$1" in
        --against) AGAINST="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) CALLS="$1"; shift ;;
    esac
done
WORK="$(mktemp -d)"
SERVER=""
TREE=""
cleanup() {
    [ -n "$SERVER" ] && kill -INT "$SERVER" 2>/dev/null || true
    [ -n "$TREE" ] && git -C "$ROOT" worktree remove --force "$TREE" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

bash "$ROOT/scripts/build_apps.sh" >/dev/null
# Each build's binary is copied out as soon as it is built: both builds uplift to the same
# target/release/exorun.
cargo build --quiet --release --locked -p exorun-cli --manifest-path "$ROOT/Cargo.toml"
cp "$ROOT/target/release/exorun" "$WORK/exorun-now"
BUILDS="now"
if [ -n "$AGAINST" ]; then
    rev="$(git -C "$ROOT" rev-parse --short "$AGAINST")"
    TREE="$ROOT/target/against-$rev"
    git -C "$ROOT" worktree remove --force "$TREE" 2>/dev/null || true
    git -C "$ROOT" worktree add --detach --quiet "$TREE" "$rev"
    echo "building $rev in target/against/" >&2
    CARGO_TARGET_DIR="$ROOT/target/against" cargo build --quiet --release --locked \
        -p exorun-cli --manifest-path "$TREE/Cargo.toml"
    cp "$ROOT/target/against/release/exorun" "$WORK/exorun-$rev"
    BUILDS="now $rev"
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

# One round of one build: its server on tcp and unix, its client's N calls on each; appends
# "BUILD KIND US" lines to results.
round() {
    local build="$1" exorun="$WORK/exorun-$1" dir
    dir="$(mktemp -d -p "$WORK")"
    "$exorun" serve "$WORK/provider.toml" --listen tcp://127.0.0.1:0 \
        --listen "unix://$dir/p.sock" >"$dir/serve.out" 2>"$dir/serve.err" &
    SERVER=$!
    for _ in $(seq 1 200); do
        grep -q "serving" "$dir/serve.out" 2>/dev/null && break
        sleep 0.05
    done
    local tcp
    tcp="$(grep -o 'tcp://[0-9.]*:[0-9]*' "$dir/serve.out" | head -n 1)"
    for address in "$tcp" "unix://$dir/p.sock"; do
        local started ended kind
        started="$(date +%s%N)"
        "$exorun" run "$WORK/loop.toml" --peer "provider=$address" \
            --invoke "loop.exorun:test/looper#add-many($CALLS)" >/dev/null
        ended="$(date +%s%N)"
        kind="${address%%://*}"
        awk -v ns="$((ended - started))" -v n="$CALLS" -v kind="$kind" -v build="$build" \
            'BEGIN { printf "%s %s %.1f\n", build, kind, ns / n / 1000 }' | tee -a "$WORK/results" |
            awk '{ printf "  %-10s %-5s %8.1f us per sequential remote call\n", $1, $2, $3 }'
    done
    kill -INT "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
}

echo "$CALLS sequential calls a row, $ROUNDS round(s), builds alternating: $BUILDS"
for r in $(seq 1 "$ROUNDS"); do
    echo "round $r"
    for build in $BUILDS; do
        round "$build"
    done
done

echo "floors of this run:"
cargo bench --quiet --locked -p exorun-transport --bench roundtrip \
    --manifest-path "$ROOT/Cargo.toml" -- --floor | sed 's/^/  /' | tee "$WORK/floors"

echo "best round of each build:"
awk '
    { key = $1 " " $2; if (!(key in best) || $3 < best[key]) best[key] = $3 }
    END { for (key in best) print key, best[key] }
' "$WORK/results" | sort >"$WORK/best"
while read -r build kind us; do
    floor="$(awk -v kind="$kind" '$1 == kind && /floor/ { print $2 }' "$WORK/floors")"
    awk -v b="$build" -v k="$kind" -v us="$us" -v f="$floor" \
        'BEGIN { printf "  %-10s %-5s %8.1f us per call, %.2fx the floor\n", b, k, us, us / f }'
done <"$WORK/best"
if [ -n "$AGAINST" ]; then
    for kind in tcp unix; do
        now="$(awk -v k="$kind" '$1 == "now" && $2 == k { print $3 }' "$WORK/best")"
        old="$(awk -v k="$kind" -v r="$rev" '$1 == r && $2 == k { print $3 }' "$WORK/best")"
        awk -v k="$kind" -v now="$now" -v old="$old" -v r="$rev" \
            'BEGIN { printf "  ratio %-5s now / %s: %.3f\n", k, r, now / old }'
    done
fi
