#!/usr/bin/env bash
# Proves the workspace's dependency edges (README, "Layers"): two stacks that meet only in
# exorun-bind, with exorun-host above them and the command on top.
#   shared:      exorun-common (boxed futures, throttles, causes): no dependency at all
#   wire stack:  neorpc (by default neither wasmtime nor tokio) < exorun-transport (no
#                wasmtime); serving (listeners, caps, drain) lives here
#   wasm stack:  exorun-core (neither neorpc nor exorun-transport, nor wasmtime-wasi: no
#                interface is special) < exorun-systems (WASI is one system among others)
#   meeting:     exorun-bind (both stacks; the dispatcher only, so no rustix; no systems, no
#                hyper, no rustls: HTTP is exorun-http's)
#   beside bind: exorun-http (wasi:http serving on the wasm stack: no wire crate, no bind)
#   host:        exorun-host (manifests, compositions, meta) above bind and http, below the
#                command (no exorun-cli)
#   capabilities: exorun-cap (the format, for hosts and wasm guests alike): none of ours, no
#                wasmtime, no tokio, no std-only crate
#   test plumbing: exorun-testkit, a dev-dependency only, never a normal one
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
forbid_direct() { # label crate names: the crate's own (depth 1) dependencies must not hold names
    local label="$1" crate="$2"
    local list; list="$(deps -p "$crate" --depth 1)"
    for name in $3; do
        if grep -qx "$name" <<<"$list"; then
            echo "layering: $label depends directly on $name" >&2; fail=1
        fi
    done
}
require() { # label crate-args... name
    local label="$1"; shift
    if ! has "$@"; then
        echo "layering check is broken: $label no longer shows ${!#}" >&2; fail=1
    fi
}

forbid_all() { # label crate: the crate's normal dependency tree is the crate alone
    local label="$1" crate="$2"
    local list; list="$(deps -p "$crate" | grep -vx "$crate" || true)"
    if [ -n "$list" ]; then
        echo "layering: $label depends on $(tr '\n' ' ' <<<"$list")" >&2; fail=1
    fi
}

forbid_all "exorun-common (no dependency at all)" exorun-common
forbid "neorpc (default features)" -p neorpc "wasmtime tokio"
forbid "exorun-cap" -p exorun-cap "neorpc exorun-transport exorun-core exorun-systems exorun-bind exorun-cli exorun-testkit wasmtime tokio"
forbid "neorpc" -p neorpc --features wasmtime "exorun-transport exorun-core exorun-systems exorun-bind exorun-cli exorun-testkit"
forbid "exorun-transport" -p exorun-transport --all-features "wasmtime exorun-core exorun-systems exorun-bind exorun-http exorun-host exorun-cli exorun-testkit"
forbid "exorun-core" -p exorun-core "neorpc exorun-transport exorun-systems exorun-bind exorun-http exorun-host exorun-cli wasmtime-wasi exorun-testkit"
forbid "exorun-systems" -p exorun-systems "neorpc exorun-transport exorun-bind exorun-http exorun-host exorun-cli exorun-testkit"
forbid "exorun-bind" -p exorun-bind "exorun-systems exorun-http exorun-host exorun-cli exorun-testkit hyper rustls"
forbid_direct "exorun-bind (serving is the transport's)" exorun-bind "rustix"
forbid "exorun-http" -p exorun-http "neorpc exorun-transport exorun-bind exorun-host exorun-cli exorun-testkit"
forbid "exorun-host" -p exorun-host "exorun-cli exorun-testkit"
forbid "exorun-cli" -p exorun-cli "exorun-testkit"

# The check itself: edges that must exist are found by the same means, so a broken `deps`
# (or a pattern that can never match) fails here instead of passing everything above.
require "neorpc's codec feature" -p neorpc --features wasmtime wasmtime
require "exorun-systems (WASI as a system)" -p exorun-systems wasmtime-wasi
require "exorun-transport (serving's descriptor limit)" -p exorun-transport --depth 1 rustix
require "exorun-transport" -p exorun-transport neorpc
require "exorun-systems" -p exorun-systems exorun-core
require "exorun-bind (the diamond's wire side)" -p exorun-bind neorpc
require "exorun-bind (the diamond's wire side)" -p exorun-bind exorun-transport
require "exorun-bind (the diamond's wasm side)" -p exorun-bind exorun-core
require "exorun-common (every layer's)" -p exorun-transport exorun-common
require "exorun-common (every layer's)" -p exorun-core exorun-common
require "exorun-http (handlers' requests made in their stores)" -p exorun-http exorun-systems
require "exorun-http (its server)" -p exorun-http hyper
require "exorun-host (above bind)" -p exorun-host exorun-bind
require "exorun-host (manifests route to handlers)" -p exorun-host exorun-http
require "exorun-cli (on the host library)" -p exorun-cli exorun-host
require "exorun-cap (its signatures)" -p exorun-cap ed25519-dalek
[ "$fail" = 0 ] && echo "layering: ok"
exit "$fail"
