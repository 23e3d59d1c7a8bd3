#pragma once
// Stand-in for the header a CUDA build of LibTorch generates (a CPU-only LibTorch ships the
// c10/cuda headers without it). A shared-library build defines just this.
#define C10_CUDA_BUILD_SHARED_LIBS
