#!/usr/bin/env bash
# Compiles the engine's C++ against LibTorch 2.6 *with CUDA* (Debian trixie's libtorch-cuda-dev
# headers), so the CUDA-only code paths (device-resident step, CUDA graphs, memory statistics) are
# checked on a machine without a GPU or a CUDA LibTorch. Syntax and types only (-fsyntax-only):
# nothing is linked or run. Also compiles the CPU code paths against the same 2.x headers.
#
# Needs: g++, curl, dpkg-deb, and the CUDA runtime headers (cuda_runtime_api.h) under
# $CUDA_HOME/include (default /usr/local/cuda). Without the headers or the download it says so
# and exits 0: this is a check for machines that can run it, not a build requirement.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_URL="http://deb.debian.org/debian/pool/contrib/p/pytorch-cuda/libtorch-cuda-dev_2.6.0+dfsg-7+b1_amd64.deb"
DEB_SHA256="8906705aa8824b1ad3783b80688accd5bc05fedd97d0ccb40cb461f8f43f5182"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/melanoma-native/libtorch-2.6-cuda-headers"
CUDA_INCLUDE="${CUDA_HOME:-/usr/local/cuda}/include"

skip() { echo "check-cuda-compile: skipped: $*"; exit 0; }

[ -f "$CUDA_INCLUDE/cuda_runtime_api.h" ] || skip "no CUDA runtime headers in $CUDA_INCLUDE (set CUDA_HOME)"
command -v dpkg-deb >/dev/null || skip "dpkg-deb not found"

if [ ! -f "$CACHE/usr/include/torch/csrc/api/include/torch/version.h" ]; then
  mkdir -p "$CACHE"
  deb="$CACHE.deb.part"
  curl -fsSL --retry 2 -o "$deb" "$DEB_URL" || skip "could not download $DEB_URL"
  echo "$DEB_SHA256  $deb" | sha256sum -c --quiet - || { rm -f "$deb"; echo "check-cuda-compile: $DEB_URL has the wrong sha256" >&2; exit 1; }
  dpkg-deb -x "$deb" "$CACHE"
  rm -f "$deb"
fi

TORCH_INCLUDE="$CACHE/usr/include"
flags=(-std=c++17 -fsyntax-only -Wall -Wno-unused-parameter
       -I"$TORCH_INCLUDE" -I"$TORCH_INCLUDE/torch/csrc/api/include")
status=0
check() {
  local label=$1; shift
  local started=$SECONDS
  if g++ "${flags[@]}" "$@"; then
    echo "check-cuda-compile: ok: $label ($((SECONDS - started)) s)"
  else
    echo "check-cuda-compile: FAILED: $label" >&2
    status=1
  fi
}
check "engine.cc, LibTorch 2.6 + CUDA" -DENGINE_WITH_CUDA -I"$CUDA_INCLUDE" -Iscripts/cuda-stubs native/engine/engine.cc
check "engine.cc, LibTorch 2.6 CPU" native/engine/engine.cc
check "efficientnet.cc, LibTorch 2.6" native/engine/efficientnet.cc
exit $status
