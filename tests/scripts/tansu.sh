#!/usr/bin/env bash
# The real Kafka-protocol broker for firn's end-to-end tests: tansu 0.6.0 from crates.io, built
# with `--features dynostore` (in-memory storage, `memory://`). Tests start one broker process per
# test on a free loopback port (tests/src/broker.rs); this script only makes sure the binary exists.
#
#   tests/scripts/tansu.sh install   build and cache the binary if it is missing (about 11 min on
#                                    2 cores, once per machine); idempotent
#   tests/scripts/tansu.sh path      print the binary's path (exit 3 if it is not installed)
#
# Env: FIRN_CACHE (default ~/.cache/firn). The binary lives in $FIRN_CACHE/tansu-0.6.0/bin/tansu;
# its build directory is thrown away afterwards (1.4 GiB), the binary is 53 MiB.
set -euo pipefail

version="0.6.0"
cache="${FIRN_CACHE:-$HOME/.cache/firn}"
root="$cache/tansu-$version"
bin="$root/bin/tansu"

log() { echo "tansu.sh: $*" >&2; }

installed() { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "$version"; }

case "${1:-install}" in
    install)
        if installed; then
            log "tansu $version present ($bin)"
            exit 0
        fi
        log "building tansu $version --features dynostore into $root (about 11 minutes, once)"
        mkdir -p "$root"
        build_dir="$(mktemp -d "${TMPDIR:-/tmp}/firn-tansu-build.XXXXXX")"
        trap 'rm -rf "$build_dir"' EXIT
        # Its own target dir: tansu's dependency versions must not disturb the project's cache.
        CARGO_TARGET_DIR="$build_dir" cargo install tansu --version "$version" --locked \
            --features dynostore --root "$root" --quiet
        installed || { log "build finished but $bin does not report version $version"; exit 1; }
        log "tansu $version installed ($bin)"
        ;;
    path)
        installed || { log "tansu $version is not installed; run tests/scripts/tansu.sh install"; exit 3; }
        echo "$bin"
        ;;
    *)
        echo "usage: $0 install|path" >&2
        exit 2
        ;;
esac
