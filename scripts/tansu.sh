#!/usr/bin/env bash
# Makes sure the test broker, tansu (a Kafka-protocol broker; crates.io),
# is installed, and prints its path. Reuses an installed one. The first
# install builds it from source: about 25 minutes on two cores.
# The default build has no storage engine, hence the features.
set -euo pipefail
TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
export PATH="$HOME/.cargo/bin:$PATH"
if [ -n "${KARPOOSHEH_TANSU:-}" ] && [ -x "$KARPOOSHEH_TANSU" ]; then
  echo "$KARPOOSHEH_TANSU"; exit 0
fi
if command -v tansu >/dev/null 2>&1; then
  command -v tansu; exit 0
fi
echo "karpoosheh: installing the test broker tansu $TANSU_VERSION (cargo install; about 25 minutes the first time)" >&2
# Its own target dir, so it never touches the workspace's builds.
env -u CARGO_TARGET_DIR CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/karpoosheh/tansu-build" \
  nice -n 5 cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore,libsql >&2
rm -rf "${XDG_CACHE_HOME:-$HOME/.cache}/karpoosheh/tansu-build"
command -v tansu
