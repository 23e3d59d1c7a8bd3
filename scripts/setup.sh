#!/usr/bin/env bash
# One-step set-up on a Debian/Ubuntu machine: checks Node.js, finds LibTorch (or installs
# Debian's libtorch-dev when running as root), installs the npm dependencies and builds the two
# native addons and the TypeScript. Safe to run again.
#
# LibTorch is taken, in order, from: Torch_DIR or CMAKE_PREFIX_PATH (an unpacked LibTorch or a
# PyTorch install), Debian's libtorch-dev, or the PyTorch of `python3`.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || fail "Node.js 20 or newer is needed: https://nodejs.org (or: apt-get install -y nodejs npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "Node.js 20 or newer is needed (found $(node --version))"

as_root=false
[ "$(id -u)" -eq 0 ] && as_root=true
apt_updated=false
apt_install() {
  if ! $apt_updated; then DEBIAN_FRONTEND=noninteractive apt-get update -qq; apt_updated=true; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Build tools for the addons.
missing_tools=()
for tool in cmake make g++ python3; do command -v "$tool" >/dev/null || missing_tools+=("$tool"); done
if [ ${#missing_tools[@]} -gt 0 ]; then
  if $as_root && command -v apt-get >/dev/null; then
    say "installing build tools: ${missing_tools[*]}"
    apt_install cmake make g++ python3
  else
    fail "missing build tools: ${missing_tools[*]}. Install them: sudo apt-get install -y cmake make g++ python3"
  fi
fi

# A CMake package of LibTorch under one of the prefixes given (an unpacked LibTorch, or a
# PyTorch install's torch.utils.cmake_prefix_path).
torch_config_under() {
  local prefix
  for prefix in ${1//:/ }; do
    for candidate in "$prefix/share/cmake/Torch" "$prefix/Torch" "$prefix"; do
      [ -f "$candidate/TorchConfig.cmake" ] && return 0
    done
  done
  return 1
}
python_torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)

torch_source=""
if [ -n "${Torch_DIR:-}" ]; then
  torch_source="Torch_DIR=$Torch_DIR"
elif [ -n "${CMAKE_PREFIX_PATH:-}" ] && torch_config_under "$CMAKE_PREFIX_PATH"; then
  torch_source="CMAKE_PREFIX_PATH=$CMAKE_PREFIX_PATH"
elif dpkg -s libtorch-dev >/dev/null 2>&1; then
  torch_source="Debian libtorch-dev"
elif [ -n "$python_torch_prefix" ] && torch_config_under "$python_torch_prefix"; then
  # (Debian's python3-torch has no CMake package: it does not count.)
  torch_source="PyTorch of python3 ($(python3 -c 'import torch;print(torch.__version__)'))"
elif $as_root && command -v apt-get >/dev/null; then
  say "installing LibTorch (Debian's libtorch-dev, CPU) ..."
  apt_install libtorch-dev
  torch_source="Debian libtorch-dev (just installed)"
else
  fail "LibTorch was not found. Either:
  - sudo apt-get install -y libtorch-dev            (Debian/Ubuntu, CPU), then run this again; or
  - Torch_DIR=/path/to/libtorch/share/cmake/Torch $0    (an unpacked LibTorch, CPU or CUDA); or
  - CMAKE_PREFIX_PATH=\$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)') $0   (a PyTorch install)"
fi
say "LibTorch: $torch_source"

if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build
say "ready: npm run train:native trains on the built-in demo data; npm test runs the tests"
