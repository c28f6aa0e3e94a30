#!/usr/bin/env bash
# Proves the workspace's dependency edges point one way (README, "Layers"):
# neorpc without default features has neither wasmtime nor tokio; exorun-transport has no wasmtime;
# no crate depends on a crate above it (neorpc < transport < core < systems < bind < cli).
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
forbid "exorun-transport" -p exorun-transport "wasmtime exorun-core exorun-systems exorun-bind exorun-cli"
forbid "neorpc" -p neorpc "exorun-transport exorun-core exorun-systems exorun-bind exorun-cli"
forbid "exorun-core" -p exorun-core "exorun-systems exorun-bind exorun-cli"
forbid "exorun-systems" -p exorun-systems "exorun-bind exorun-cli"
forbid "exorun-bind" -p exorun-bind "exorun-systems exorun-cli"
# The check itself: known edges must show, or a broken `deps` would pass everything.
if ! deps -p neorpc | grep -qx wasmtime; then
    echo "layering check is broken: neorpc's codec feature no longer shows wasmtime" >&2; fail=1
fi
if ! deps -p exorun-cli | grep -qx exorun-bind; then
    echo "layering check is broken: exorun-cli no longer shows exorun-bind" >&2; fail=1
fi
[ "$fail" = 0 ] && echo "layering: ok"
exit "$fail"
