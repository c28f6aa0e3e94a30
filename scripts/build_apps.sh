#!/usr/bin/env bash
# Builds every guest app under apps/ into a component in fixtures/ (git-ignored), which the
# tests and the demo read.
#
# Two paths (see ../shared/TOOLCHAIN.md):
#  - rustup has wasm32-unknown-unknown: plain `cargo build --target wasm32-unknown-unknown`.
#  - otherwise (these machines): Debian's rustc-web 1.96 + rust-web-src build std from source for
#    wasm32-unknown-unknown (-Zbuild-std), linked with the rust-lld that rustup's host toolchain
#    ships. Missing packages are installed with apt-get.
# Either way, `wasm-tools component new` (pinned, installed with cargo if missing) turns each core
# module into a component (wit-component validates what it encodes; the inspection test then
# loads every component in wasmtime). wasm32-unknown-unknown keeps guests free of WASI imports they did not
# ask for, so both paths produce the same components.
#
# Idempotent: cargo rebuilds only what changed and a component is re-made only when its module
# is newer. On any failure every fixture is removed, so no stale component can look fresh.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
APPS="$ROOT/apps"
OUT="${EXORUN_FIXTURES:-$ROOT/fixtures}"
TARGET=wasm32-unknown-unknown
WASM_TOOLS_VERSION=1.254.2
APT_PACKAGES="rustc-web rust-web-src"
DEBIAN_RUSTC=/usr/bin/rustc

fail() {
    rm -rf "$OUT"
    echo "build_apps: $*; removed $OUT so no stale component survives" >&2
    exit 1
}
trap 'fail "a build step failed (line $LINENO)"' ERR

ensure_wasm_tools() {
    if wasm-tools --version 2>/dev/null | grep -q "^wasm-tools $WASM_TOOLS_VERSION\b"; then
        return
    fi
    echo "build_apps: installing wasm-tools $WASM_TOOLS_VERSION (component subcommands only)"
    cargo install wasm-tools --version "$WASM_TOOLS_VERSION" --locked \
        --no-default-features --features component \
        || fail "could not install wasm-tools $WASM_TOOLS_VERSION with cargo"
}

ensure_debian_rust() {
    if [ -x "$DEBIAN_RUSTC" ] && [ -d /usr/lib/rustlib/src/rust/library ]; then
        return
    fi
    echo "build_apps: installing Debian's $APT_PACKAGES (std source for the wasm fallback)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    command -v apt-get >/dev/null || fail "no wasm32-unknown-unknown in rustup and no apt-get: run 'rustup target add $TARGET'"
    $sudo apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $APT_PACKAGES \
        || fail "apt-get install $APT_PACKAGES failed"
}

build_modules() {
    local manifest="$APPS/Cargo.toml"
    if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        echo "build_apps: rustup has $TARGET"
        cargo build --release --locked --target "$TARGET" --manifest-path "$manifest"
        return
    fi
    ensure_debian_rust
    local lld
    lld="$(rustup run stable rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld"
    [ -x "$lld" ] || fail "rust-lld not found at $lld (rustup's host toolchain ships it)"
    echo "build_apps: fallback: $($DEBIAN_RUSTC --version) with -Zbuild-std, linked by rust-lld"
    RUSTC="$DEBIAN_RUSTC" RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=$lld" \
        cargo build --release --locked --target "$TARGET" --manifest-path "$manifest" \
        -Zbuild-std=std,panic_abort
}

componentize() {
    local modules="$APPS/target/$TARGET/release"
    mkdir -p "$OUT"
    local members
    members="$(sed -n '/^members = \[/,/^\]/p' "$APPS/Cargo.toml" | grep -o '"[a-z0-9-]*"' | tr -d '"')"
    [ -n "$members" ] || fail "no members found in $APPS/Cargo.toml"
    for app in $members; do
        local module="$modules/${app//-/_}.wasm"
        local component="$OUT/$app.wasm"
        [ -f "$module" ] || fail "cargo produced no module for $app at $module"
        if [ "$component" -nt "$module" ]; then
            continue
        fi
        wasm-tools component new "$module" -o "$component.tmp" \
            || fail "wasm-tools could not make a component of $app"
        mv "$component.tmp" "$component"
        echo "build_apps: $app -> $component ($(stat -c %s "$component") bytes)"
    done
}

ensure_wasm_tools
build_modules
componentize
echo "build_apps: components are in $OUT"
