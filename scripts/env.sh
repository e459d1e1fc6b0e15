# Shared by scripts/*: where builds go and the tools every command needs.
# Sourced, not run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# Builds live outside the clone so a fresh clone reuses the previous build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/karpoosheh/target}"
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
