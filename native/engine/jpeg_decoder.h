// JPEG batches decoded on the GPU with nvJPEG: the data path's option for when CPU decoding (sharp,
// one JPEG per core) cannot keep a GPU fed. Compiled only into CUDA builds that found the CUDA
// toolkit's nvjpeg (ENGINE_WITH_NVJPEG, set by CMakeLists.txt); engine.cc owns one per engine and
// calls it on the engine thread only.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

#include "config.h"

namespace engine {

class DeviceJpegDecoder {
 public:
  explicit DeviceJpegDecoder(int deviceIndex);
  ~DeviceJpegDecoder();
  DeviceJpegDecoder(const DeviceJpegDecoder&) = delete;
  DeviceJpegDecoder& operator=(const DeviceJpegDecoder&) = delete;

  // batch.jpegs as uint8 [n, height, width, 3] RGB on the device, each image resized as sharp's
  // pipeline does ('fill' stretches, 'cover' crops the centre square first), with antialiased
  // bicubic interpolation. Runs on the current CUDA stream and returns once nvJPEG has read the
  // host bytes (the resize may still be queued). A JPEG nvJPEG cannot read throws EngineFailure
  // ERR_IMAGE_DECODE naming its position in the batch.
  at::Tensor decode(const HostBatch& batch);

  // "hardware" (the GPU's JPEG engines, A100/H100 and newer) or "cuda" (nvJPEG's CUDA kernels).
  std::string backend() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace engine
