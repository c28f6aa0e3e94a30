#!/usr/bin/env bash
# The README's first command: exorun end to end on one machine, two processes.
#
# Builds what it needs (the guest apps and their toolchain, the exorun CLI), starts
# `exorun serve` hosting math-provider on loopback, then `exorun run`s a composition in which
# math-consumer reaches math-provider remotely, a relay links locally and remotely,
# logger-client uses the logging system, two kv-clients share one kv store, and a counter
# resource made on the server is used and given back, and one line of the server's Prometheus
# metrics is read over HTTP. Then a secure
# link: two node keys from `exorun keygen`, a second server on tls:// whose export allows only
# the caller's key, and a caller that pins the server's key; then an export guarded by the
# `auth` app, called with a capability the operator issued and its holder delegated, and
# refused without one; then a runtime served with `--manage` gets math-provider deployed onto it
# while it runs, which a consumer calls before it is stopped; then a note kept in a store on
# disk by one `exorun run` and read by the next; last, a wasi:http handler served with
# `--http` whose math import is another runtime's, one page fetched with curl. Prints every
# result, stops the
# servers with Ctrl-C (SIGINT) and exits non-zero if any expected line is missing or a server
# did not stop cleanly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d)"
SERVER_PID=""
SECURE_PID=""
GUARDED_PID=""
MANAGED_PID=""
MATH_PID=""
SITE_PID=""

cleanup() {
    for pid in "$SERVER_PID" "$SECURE_PID" "$GUARDED_PID" "$MANAGED_PID" "$MATH_PID" "$SITE_PID"; do
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

# Waits (30 s at most) until the server PID, writing to $WORK/NAME.out and NAME.err, says it
# serves; prints the address it listens on.
serving() {
    local name="$1" pid="$2"
    for _ in $(seq 1 300); do
        grep -q '^exorun: serving' "$WORK/$name.out" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.err" >&2; fail "the $name server exited early"; }
        sleep 0.1
    done
    grep -q '^exorun: serving' "$WORK/$name.out" || fail "the $name server did not start within 30 s"
    sed -n 's/^exorun: listening on //p' "$WORK/$name.out" | head -n 1
}

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

say "starting: exorun serve examples/provider.toml --listen tcp://127.0.0.1:0 --metrics 127.0.0.1:0"
"$EXORUN" serve examples/provider.toml --listen tcp://127.0.0.1:0 --metrics 127.0.0.1:0 \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
ADDRESS="$(serving server "$SERVER_PID")"
cat "$WORK/server.out"

say "running: exorun run examples/composition.toml --peer provider=$ADDRESS"
RUST_LOG="${RUST_LOG:-exorun::guest=info,exorun_bind::link::remote=debug}" \
    "$EXORUN" run examples/composition.toml --peer "provider=$ADDRESS" | tee "$WORK/run.out"

say "one line of the server's metrics (GET /metrics)"
METRICS="$(grep -o 'http://[0-9.]*:[0-9]*' "$WORK/server.out" | head -n 1)"
METRICS_PORT="${METRICS##*:}"
exec 3<>"/dev/tcp/127.0.0.1/$METRICS_PORT"
printf 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
SCRAPED="$(cat <&3)"
exec 3<&-
SERVED="$(printf '%s\n' "$SCRAPED" | grep '^exorun_calls_served_total{export="math"' | grep 'outcome="ok"' | head -n 1 || true)"
[ -n "$SERVED" ] || fail "the server's metrics have no served math call"
printf 'metrics: %s\n' "$SERVED"

say "stopping the server (SIGINT)"
kill -INT "$SERVER_PID"
STATUS=0
wait "$SERVER_PID" || STATUS=$?
SERVER_PID=""
cat "$WORK/server.err"
[ "$STATUS" -eq 0 ] || fail "the server exited with status $STATUS"

say "secure link: node keys, tls:// pinned by the caller, an allow list on the server"
"$EXORUN" keygen --out "$WORK/provider.key" >"$WORK/provider.pub"
"$EXORUN" keygen --out "$WORK/consumer.key" >"$WORK/consumer.pub"
PROVIDER_KEY="$(cat "$WORK/provider.pub")"
CONSUMER_KEY="$(cat "$WORK/consumer.pub")"
printf 'provider %s\nconsumer %s\n' "$PROVIDER_KEY" "$CONSUMER_KEY"
cat >"$WORK/secure-provider.toml" <<EOF
key = "provider.key"
[apps]
math-provider = "$ROOT/fixtures/math-provider.wasm"
[instances.math]
app = "math-provider"
export = { allow = ["$CONSUMER_KEY"] }   # only the consumer's key may call it
EOF
"$EXORUN" serve "$WORK/secure-provider.toml" --listen tls://127.0.0.1:0 \
    >"$WORK/secure.out" 2>"$WORK/secure.err" &
SECURE_PID=$!
TLS_ADDRESS="$(serving secure "$SECURE_PID")"
cat "$WORK/secure.out"
cat >"$WORK/secure-composition.toml" <<EOF
key = "consumer.key"
[apps]
math-consumer = "$ROOT/fixtures/math-consumer.wasm"
[peers]
provider = { address = "$TLS_ADDRESS", key = "$PROVIDER_KEY" }   # the key it must present
[instances.secure-calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "provider", target = "math" } }
EOF
say "running: exorun run secure-composition.toml (over $TLS_ADDRESS)"
"$EXORUN" run "$WORK/secure-composition.toml" | tee -a "$WORK/run.out"
kill -INT "$SECURE_PID"
STATUS=0
wait "$SECURE_PID" || STATUS=$?
SECURE_PID=""
[ "$STATUS" -eq 0 ] || { cat "$WORK/secure.err" >&2; fail "the secure server exited with status $STATUS"; }

say "capabilities: an export guarded by the auth app, called with a delegated capability"
"$EXORUN" keygen --out "$WORK/operator.key" >"$WORK/operator.pub"
"$EXORUN" keygen --out "$WORK/alice.key" >"$WORK/alice.pub"
"$EXORUN" keygen --out "$WORK/bob.key" >"$WORK/bob.pub"
"$EXORUN" cap issue --key "$WORK/operator.key" --to "$(cat "$WORK/alice.pub")" \
    --allow 'math/exorun:test/math#add' --expires-in 7d --caveat demo --out "$WORK/alice.cap"
"$EXORUN" cap delegate "$WORK/alice.cap" --key "$WORK/alice.key" --to "$(cat "$WORK/bob.pub")" \
    --expires-in 1h --out "$WORK/bob.cap"
"$EXORUN" cap show "$WORK/bob.cap"
cat >"$WORK/guarded-provider.toml" <<EOF
key = "provider.key"
[apps]
auth = "$ROOT/fixtures/auth.wasm"
math-provider = "$ROOT/fixtures/math-provider.wasm"
[instances.auth]
app = "auth"
config = { roots = "$(cat "$WORK/operator.pub")" }   # the only key auth trusts
links = { "wasi:*" = { system = "wasi" } }
[instances.math]
app = "math-provider"
export = { guard = "auth" }   # auth decides every call
EOF
"$EXORUN" serve "$WORK/guarded-provider.toml" --listen tls://127.0.0.1:0 \
    >"$WORK/guarded.out" 2>"$WORK/guarded.err" &
GUARDED_PID=$!
GUARDED_ADDRESS="$(serving guarded "$GUARDED_PID")"
guarded_caller() {
    cat <<EOF
key = "bob.key"
[apps]
math-consumer = "$ROOT/fixtures/math-consumer.wasm"
[peers]
provider = { address = "$GUARDED_ADDRESS", key = "$PROVIDER_KEY"$1 }
[instances.guarded-calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "provider", target = "math" } }
EOF
}
guarded_caller ', capability = "bob.cap"' >"$WORK/guarded-composition.toml"
guarded_caller '' >"$WORK/bare-composition.toml"
say "running: exorun run guarded-composition.toml (bob presents bob.cap, delegated by alice)"
"$EXORUN" run "$WORK/guarded-composition.toml" | tee -a "$WORK/run.out"
say "running: exorun run bare-composition.toml (bob presents nothing)"
if "$EXORUN" run "$WORK/bare-composition.toml" 2>"$WORK/refused.err"; then
    fail "a call without a capability was let through"
fi
REFUSAL="$(grep -o 'this caller may not call[^"]*no capability was presented' "$WORK/refused.err" | head -n 1 || true)"
printf 'refused without a capability: %s\n' "$REFUSAL" | tee -a "$WORK/run.out"
kill -INT "$GUARDED_PID"
STATUS=0
wait "$GUARDED_PID" || STATUS=$?
GUARDED_PID=""
[ "$STATUS" -eq 0 ] || { cat "$WORK/guarded.err" >&2; fail "the guarded server exited with status $STATUS"; }

say "managing a running runtime: exorun serve --manage, then deploy, call, ps and stop"
"$EXORUN" serve --manage --operator "$(cat "$WORK/operator.pub")" --key "$WORK/provider.key" \
    --listen tls://127.0.0.1:0 >"$WORK/managed.out" 2>"$WORK/managed.err" &
MANAGED_PID=$!
MANAGED_ADDRESS="$(serving managed "$MANAGED_PID")"
AT=(--at "$MANAGED_ADDRESS" --peer-key "$PROVIDER_KEY" --key "$WORK/operator.key")
"$EXORUN" deploy "$ROOT/fixtures/math-provider.wasm" --name math --export "${AT[@]}"
cat >"$WORK/deployed-composition.toml" <<EOF
key = "operator.key"
[apps]
math-consumer = "$ROOT/fixtures/math-consumer.wasm"
[peers]
managed = { address = "$MANAGED_ADDRESS", key = "$PROVIDER_KEY" }
[instances.deployed-calc]
app = "math-consumer"
links = { "exorun:test/math" = { remote = "managed", target = "math" } }
EOF
"$EXORUN" run "$WORK/deployed-composition.toml" | tee -a "$WORK/run.out"
"$EXORUN" ps "${AT[@]}"
"$EXORUN" stop math "${AT[@]}"
kill -INT "$MANAGED_PID"
STATUS=0
wait "$MANAGED_PID" || STATUS=$?
MANAGED_PID=""
[ "$STATUS" -eq 0 ] || { cat "$WORK/managed.err" >&2; fail "the managed server exited with status $STATUS"; }

say "a store that outlives its runtime: one exorun run writes a note, the next reads it"
cat > "$WORK/notes.toml" <<EOF
[apps]
kv-client = "$ROOT/fixtures/kv-client.wasm"
[stores]
notes = { path = "notes.redb" }
[instances.notes]
app = "kv-client"
links = { "exorun:host/kv" = { system = "kv", store = "notes" } }
EOF
"$EXORUN" run "$WORK/notes.toml" --invoke 'notes.exorun:test/notes#put("greeting", "kept")'
NOTE="$("$EXORUN" run "$WORK/notes.toml" --invoke 'notes.exorun:test/notes#get("greeting")')"
printf 'note read by a new runtime: %s\n' "$NOTE" | tee -a "$WORK/run.out"

say "serving HTTP: a wasi:http handler whose math import is another runtime's, fetched with curl"
if ! command -v curl >/dev/null 2>&1; then
    echo "installing Debian's curl (the page is fetched with a real HTTP client)"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq curl \
        || fail "no curl, and apt-get could not install it"
fi
"$EXORUN" serve examples/provider.toml --listen tcp://127.0.0.1:0 \
    >"$WORK/math.out" 2>"$WORK/math.err" &
MATH_PID=$!
MATH_ADDRESS="$(serving math "$MATH_PID")"
cat > "$WORK/site.toml" <<SITE
[apps]
http-handler = "$ROOT/fixtures/http-handler.wasm"
[instances.site]
app = "http-handler"
links = { "exorun:test/math" = { remote = "$MATH_ADDRESS", target = "math" } }
[http]
routes = { "/" = "site" }
SITE
"$EXORUN" serve "$WORK/site.toml" --http 127.0.0.1:0 >"$WORK/site.out" 2>"$WORK/site.err" &
SITE_PID=$!
serving site "$SITE_PID" >/dev/null
cat "$WORK/site.out"
SITE="$(sed -n 's/^exorun: http on //p' "$WORK/site.out" | head -n 1)"
PAGE="$(curl -s --max-time 20 "$SITE/add?a=10&b=5")"
printf 'curl %s/add?a=10&b=5: %s\n' "$SITE" "$PAGE"
printf 'http page: %s\n' "$PAGE" >>"$WORK/run.out"
for pid in "$SITE_PID" "$MATH_PID"; do
    kill -INT "$pid"
    STATUS=0
    wait "$pid" || STATUS=$?
    [ "$STATUS" -eq 0 ] || fail "an HTTP demo server exited with status $STATUS"
done
SITE_PID=""
MATH_PID=""

say "checking the results"
for expected in \
    'remote-calc: "10 + 5 = 15"' \
    'relayed-calc: "10 + 5 = 15"' \
    'counting: "7 8, alive 1, given home at 9, alive 0"' \
    'logger: "Done"' \
    'kv-a: "KV result: bar"' \
    'kv-b: "KV result: bar"' \
    'secure-calc: "10 + 5 = 15"' \
    'guarded-calc: "10 + 5 = 15"' \
    'deployed-calc: "10 + 5 = 15"' \
    'refused without a capability: this caller may not call `exorun:test/math` on `math`: no capability was presented' \
    'note read by a new runtime: some("kept")' \
    'http page: 10 + 5 = 15'; do
    grep -qxF "$expected" "$WORK/run.out" || fail "missing line: $expected"
    printf 'ok  %s\n' "$expected"
done
printf '\ndemo: all links worked: system (logging, kv, a store on disk), local (relay, a resource), remote (TCP, TLS with node keys, an export guarded by a delegated capability, one deployed onto a running runtime, and the import of an HTTP handler)\n'
