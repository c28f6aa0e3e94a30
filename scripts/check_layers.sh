#!/usr/bin/env bash
# Proves the workspace's dependency edges point one way (README, "Layers"):
# neorpc without default features has neither wasmtime nor tokio; exorun-transport has no wasmtime.
# Each forbidden edge is also checked to be detectable, so this check cannot pass vacuously.
set -euo pipefail
cd "$(dirname "$0")/.."

deps() { cargo tree -e normal --prefix none --format '{p}' "$@" | awk '{print $1}' | sort -u; }
fail=0
forbid() { # crate-args... -- names
    local label="$1"; shift
    local list; list="$(deps "${@:1:$#-1}")"
    for name in ${!#}; do
        if grep -qx "$name" <<<"$list"; then
            echo "layering: $label depends on $name" >&2; fail=1
        fi
    done
}
forbid "neorpc (no default features)" -p neorpc --no-default-features "wasmtime tokio"
forbid "exorun-transport" -p exorun-transport "wasmtime"
# The check itself: neorpc with its default `wasmtime` feature must show wasmtime.
if ! deps -p neorpc | grep -qx wasmtime; then
    echo "layering check is broken: neorpc's codec feature no longer shows wasmtime" >&2; fail=1
fi
[ "$fail" = 0 ] && echo "layering: ok"
exit "$fail"
