#!/usr/bin/env bash
# Compiles the engine's C++ against newer LibTorch headers than the machine's own, *with CUDA*,
# so the CUDA-only code paths (device-resident step, CUDA graphs, memory statistics) are checked
# on a machine without a GPU or a CUDA LibTorch. Syntax and types only (-fsyntax-only): nothing is
# linked or run. Two LibTorch versions bracket the GPU machine's 2.11:
# - 2.6: Debian trixie's libtorch-cuda-dev (a CUDA build's headers), C++17;
# - 2.14: Debian sid's libtorch-dev (a CPU build, which ships the c10/cuda and ATen/cuda headers
#   too, less one generated header stubbed in scripts/cuda-stubs), C++20 as 2.14 requires.
# Each version also compiles the CPU code paths, and 2.14 the addon. The GPU JPEG decoder
# (jpeg_decoder.cc, and engine.cc with ENGINE_WITH_NVJPEG) compiles against nvjpeg.h from Debian
# trixie's nvidia-cuda-dev (CUDA 12.4; the GPU machine has 13.0, whose decode API is the same):
# a 0.9 GB package, of which one header is kept in the cache.
#
# Needs: g++, curl, dpkg-deb, and the CUDA runtime headers (cuda_runtime_api.h) under
# $CUDA_HOME/include (default /usr/local/cuda). Without the headers, or a download, it says what
# it skipped and exits 0: this is a check for machines that can run it, not a build requirement.
# A version whose package has left Debian's archive is skipped the same way.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/melanoma-native"
CUDA_INCLUDE="${CUDA_HOME:-/usr/local/cuda}/include"

[ -f "$CUDA_INCLUDE/cuda_runtime_api.h" ] || { echo "check-cuda-compile: skipped: no CUDA runtime headers in $CUDA_INCLUDE (set CUDA_HOME)"; exit 0; }
command -v dpkg-deb >/dev/null || { echo "check-cuda-compile: skipped: dpkg-deb not found"; exit 0; }

# fetch NAME URL SHA256: unpacks the .deb into $CACHE_ROOT/NAME once; fails (1) when it cannot.
fetch() {
  local name=$1 url=$2 sha=$3 dir="$CACHE_ROOT/$1"
  [ -f "$dir/usr/include/torch/csrc/api/include/torch/version.h" ] && return 0
  mkdir -p "$dir"
  local deb="$dir.deb.part"
  if ! curl -fsSL --retry 2 -o "$deb" "$url"; then
    echo "check-cuda-compile: skipped $name: could not download $url"
    rm -f "$deb"
    return 1
  fi
  echo "$sha  $deb" | sha256sum -c --quiet - || { rm -f "$deb"; echo "check-cuda-compile: $url has the wrong sha256" >&2; exit 1; }
  # Inside `if fetch`, set -e is off: a failed unpack must not leave a half cache behind.
  dpkg-deb -x "$deb" "$dir" || { rm -rf "$dir" "$deb"; echo "check-cuda-compile: could not unpack $url" >&2; exit 1; }
  rm -f "$deb"
}

# fetch_nvjpeg: nvjpeg.h into $CACHE_ROOT/nvjpeg-12.4 once; fails (1) when it cannot.
NVJPEG_INCLUDE="$CACHE_ROOT/nvjpeg-12.4"
fetch_nvjpeg() {
  [ -f "$NVJPEG_INCLUDE/nvjpeg.h" ] && return 0
  local url="http://deb.debian.org/debian/pool/non-free/n/nvidia-cuda-toolkit/nvidia-cuda-dev_12.4.127~12.4.1-2_amd64.deb"
  local sha=d846838f914a0176948d48a8bcade5d6dbcccb5c9374343f6475f5503f173ee0
  local deb="$CACHE_ROOT/nvidia-cuda-dev.deb.part" tmp="$CACHE_ROOT/nvjpeg-unpack"
  mkdir -p "$CACHE_ROOT"
  if ! curl -fsSL --retry 2 -o "$deb" "$url"; then
    echo "check-cuda-compile: skipped the nvJPEG decoder: could not download $url"
    rm -f "$deb"
    return 1
  fi
  echo "$sha  $deb" | sha256sum -c --quiet - || { rm -f "$deb"; echo "check-cuda-compile: $url has the wrong sha256" >&2; exit 1; }
  rm -rf "$tmp" && mkdir -p "$tmp"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/include/nvjpeg.h || { rm -rf "$tmp" "$deb"; echo "check-cuda-compile: no nvjpeg.h in $url" >&2; exit 1; }
  mkdir -p "$NVJPEG_INCLUDE" && mv "$tmp/usr/include/nvjpeg.h" "$NVJPEG_INCLUDE/"
  rm -rf "$tmp" "$deb"
}

status=0
# check LABEL STD INCLUDE_ROOT ARGS...: one -fsyntax-only compile.
check() {
  local label=$1 std=$2 include=$3; shift 3
  local started=$SECONDS
  if g++ -std="$std" -fsyntax-only -Wall -Wno-unused-parameter -I"$include" -I"$include/torch/csrc/api/include" "$@"; then
    echo "check-cuda-compile: ok: $label ($((SECONDS - started)) s)"
  else
    echo "check-cuda-compile: FAILED: $label" >&2
    status=1
  fi
}
cuda=(-DENGINE_WITH_CUDA -I"$CUDA_INCLUDE" -Iscripts/cuda-stubs)
nvjpeg=false with=CUDA
if fetch_nvjpeg; then
  cuda+=(-DENGINE_WITH_NVJPEG -I"$NVJPEG_INCLUDE")
  nvjpeg=true with="CUDA + nvJPEG"
fi

if fetch libtorch-2.6-cuda-headers \
  "http://deb.debian.org/debian/pool/contrib/p/pytorch-cuda/libtorch-cuda-dev_2.6.0+dfsg-7+b1_amd64.deb" \
  8906705aa8824b1ad3783b80688accd5bc05fedd97d0ccb40cb461f8f43f5182; then
  inc="$CACHE_ROOT/libtorch-2.6-cuda-headers/usr/include"
  check "engine.cc, LibTorch 2.6 + $with" c++17 "$inc" "${cuda[@]}" native/engine/engine.cc
  if $nvjpeg; then check "jpeg_decoder.cc, LibTorch 2.6 + $with" c++17 "$inc" "${cuda[@]}" native/engine/jpeg_decoder.cc; fi
  check "engine.cc, LibTorch 2.6 CPU" c++17 "$inc" native/engine/engine.cc
  check "efficientnet.cc, LibTorch 2.6" c++17 "$inc" native/engine/efficientnet.cc
fi

if fetch libtorch-2.14-headers \
  "http://deb.debian.org/debian/pool/main/p/pytorch/libtorch-dev_2.14.1+dfsg-1_amd64.deb" \
  d941cb918c760250305f2fd3c4fa63f1b86069fe6996e8c439b48af79ed27636; then
  inc="$CACHE_ROOT/libtorch-2.14-headers/usr/include"
  # The warning is about an ABI-sensitive constant inside LibTorch's own CUDAEvent.h.
  check "engine.cc, LibTorch 2.14 + $with" c++20 "$inc" -Wno-interference-size "${cuda[@]}" native/engine/engine.cc
  if $nvjpeg; then check "jpeg_decoder.cc, LibTorch 2.14 + $with" c++20 "$inc" -Wno-interference-size "${cuda[@]}" native/engine/jpeg_decoder.cc; fi
  check "engine.cc, LibTorch 2.14 CPU" c++20 "$inc" native/engine/engine.cc
  check "efficientnet.cc, LibTorch 2.14" c++20 "$inc" native/engine/efficientnet.cc
  napi=(-I"$(node -p "require('node-addon-api').include_dir")" -I"$(node -p "require('node-api-headers').include_dir")"
        -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED)
  check "addon.cc, LibTorch 2.14" c++20 "$inc" "${napi[@]}" native/engine/addon.cc
fi
exit $status
