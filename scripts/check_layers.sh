#!/usr/bin/env bash
# Proves the workspace's dependency edges (README, "Layers"): two stacks that meet only in
# exorun-bind.
#   wire stack:  neorpc (no default features: neither wasmtime nor tokio) < exorun-transport
#                (no wasmtime)
#   wasm stack:  exorun-core (neither neorpc nor exorun-transport) < exorun-systems
#   meeting:     exorun-bind (both stacks) < exorun-cli
# Each forbidden edge is also shown to be detectable: the same check, pointed at an edge that
# must exist, has to find it, so this script cannot pass vacuously.
set -euo pipefail
cd "$(dirname "$0")/.."

deps() { cargo tree -e normal --prefix none --format '{p}' "$@" | awk '{print $1}' | sort -u; }
# has CRATE-ARGS... -- NAME: whether the normal dependency tree of CRATE-ARGS holds NAME.
has() {
    local name="${!#}"
    deps "${@:1:$#-1}" | grep -qx "$name"
}
fail=0
forbid() { # label crate-args... names
    local label="$1"; shift
    local list; list="$(deps "${@:1:$#-1}")"
    for name in ${!#}; do
        if grep -qx "$name" <<<"$list"; then
            echo "layering: $label depends on $name" >&2; fail=1
        fi
    done
}
require() { # label crate-args... name
    local label="$1"; shift
    if ! has "$@"; then
        echo "layering check is broken: $label no longer shows ${!#}" >&2; fail=1
    fi
}

forbid "neorpc (no default features)" -p neorpc --no-default-features "wasmtime tokio"
forbid "neorpc" -p neorpc "exorun-transport exorun-core exorun-systems exorun-bind exorun-cli"
forbid "exorun-transport" -p exorun-transport "wasmtime exorun-core exorun-systems exorun-bind exorun-cli"
forbid "exorun-core" -p exorun-core "neorpc exorun-transport exorun-systems exorun-bind exorun-cli"
forbid "exorun-systems" -p exorun-systems "neorpc exorun-transport exorun-bind exorun-cli"
forbid "exorun-bind" -p exorun-bind "exorun-systems exorun-cli"

# The check itself: edges that must exist are found by the same means, so a broken `deps`
# (or a pattern that can never match) fails here instead of passing everything above.
require "neorpc's codec feature" -p neorpc wasmtime
require "exorun-transport" -p exorun-transport neorpc
require "exorun-systems" -p exorun-systems exorun-core
require "exorun-bind (the diamond's wire side)" -p exorun-bind neorpc
require "exorun-bind (the diamond's wire side)" -p exorun-bind exorun-transport
require "exorun-bind (the diamond's wasm side)" -p exorun-bind exorun-core
require "exorun-cli" -p exorun-cli exorun-bind
[ "$fail" = 0 ] && echo "layering: ok"
exit "$fail"
