# Shared by scripts/*: where builds go and the tools every command needs.
# Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Builds live outside the clone so a fresh clone reuses the previous build,
# one build directory per clone path: artifacts carry their clone's path
# (env!("CARGO_MANIFEST_DIR") in tests), and cargo does not rebuild when only
# the path changed, so two clones sharing one directory would read each
# other's files.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/karpoosheh/targets/$(basename "$ROOT")-$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
fi
export CARGO_TARGET_DIR
export PATH="$HOME/.cargo/bin:$PATH"

need_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "karpoosheh: cargo not found. Install Rust (https://rustup.rs: 'rustup default stable') and run again." >&2
    exit 1
  fi
}

# Installs Debian packages that are missing (as root, or with sudo).
need_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "karpoosheh: installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}
