#include "jpeg_decoder.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <nvjpeg.h>
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

namespace engine {
namespace {

const char* statusName(nvjpegStatus_t status) {
  switch (status) {
    case NVJPEG_STATUS_SUCCESS: return "NVJPEG_STATUS_SUCCESS";
    case NVJPEG_STATUS_NOT_INITIALIZED: return "NVJPEG_STATUS_NOT_INITIALIZED";
    case NVJPEG_STATUS_INVALID_PARAMETER: return "NVJPEG_STATUS_INVALID_PARAMETER";
    case NVJPEG_STATUS_BAD_JPEG: return "NVJPEG_STATUS_BAD_JPEG";
    case NVJPEG_STATUS_JPEG_NOT_SUPPORTED: return "NVJPEG_STATUS_JPEG_NOT_SUPPORTED";
    case NVJPEG_STATUS_ALLOCATOR_FAILURE: return "NVJPEG_STATUS_ALLOCATOR_FAILURE";
    case NVJPEG_STATUS_EXECUTION_FAILED: return "NVJPEG_STATUS_EXECUTION_FAILED";
    case NVJPEG_STATUS_ARCH_MISMATCH: return "NVJPEG_STATUS_ARCH_MISMATCH";
    case NVJPEG_STATUS_INTERNAL_ERROR: return "NVJPEG_STATUS_INTERNAL_ERROR";
    case NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED: return "NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED";
    default: return "an unknown nvJPEG status";
  }
}

// Library failures (not the image's fault) end the run with ERR_ENGINE_DEVICE.
void check(nvjpegStatus_t status, const char* what) {
  if (status != NVJPEG_STATUS_SUCCESS) {
    throw EngineFailure("ERR_ENGINE_DEVICE", std::string("nvJPEG: ") + what + " failed (" + statusName(status) +
                                                 "): decode on the CPU instead (--decode sharp)");
  }
}

// The statuses that are the file's fault; every other one is the library's or the device's.
bool imageAtFault(nvjpegStatus_t status) {
  return status == NVJPEG_STATUS_BAD_JPEG || status == NVJPEG_STATUS_JPEG_NOT_SUPPORTED ||
         status == NVJPEG_STATUS_INCOMPLETE_BITSTREAM;
}

EngineFailure badJpeg(int64_t position, const std::string& why) {
  return EngineFailure("ERR_IMAGE_DECODE", "nvJPEG cannot decode the JPEG at position " + std::to_string(position) +
                                               " of the batch: " + why +
                                               ". Replace or remove the image, or decode on the CPU (--decode sharp)");
}

// Consecutive images of one source size are resized together, up to this many bytes of float
// copies at once (a 1024 px source takes 12 MB; a 6000x4000 ISIC original 288 MB).
constexpr int64_t kResizeGroupBytes = int64_t{256} << 20;
// LibTorch's antialiased kernels run out of shared memory beyond ~45x downscaling: larger sources
// are first halved (2x2 means) until they are within this factor of the target.
constexpr int64_t kMaxAntialiasFactor = 16;

// Waits for the stream's queued work, errors ignored: before throwing, so that no decode still
// writes into buffers the unwinding frees.
void drain(cudaStream_t stream) { (void)cudaStreamSynchronize(stream); }

}  // namespace

struct DeviceJpegDecoder::Impl {
  int deviceIndex = 0;
  // The hardware backend (the GPU's JPEG engines) when the GPU has them, else nvJPEG's default
  // (CUDA kernels, with GPU Huffman decoding for large baseline JPEGs in batches).
  nvjpegHandle_t handle = nullptr;
  nvjpegJpegState_t state = nullptr;
  bool hardware = false;
  nvjpegJpegStream_t header = nullptr;  // hardware only: parses headers for the support check
  // JPEGs the hardware backend cannot batch (progressive ones, some subsamplings), one at a time
  // through the default backend; made on first need.
  nvjpegHandle_t fallbackHandle = nullptr;
  nvjpegJpegState_t fallbackState = nullptr;

  ~Impl() {
    // Statuses ignored: a destructor must not throw, and there is nothing left to tell.
    if (fallbackState) nvjpegJpegStateDestroy(fallbackState);
    if (fallbackHandle) nvjpegDestroy(fallbackHandle);
    if (header) nvjpegJpegStreamDestroy(header);
    if (state) nvjpegJpegStateDestroy(state);
    if (handle) nvjpegDestroy(handle);
  }

  void ensureFallback() {
    if (fallbackHandle && fallbackState) return;
    if (!fallbackHandle) {
      check(nvjpegCreateEx(NVJPEG_BACKEND_DEFAULT, nullptr, nullptr, NVJPEG_FLAGS_DEFAULT, &fallbackHandle),
            "creating the default-backend decoder");
    }
    check(nvjpegJpegStateCreate(fallbackHandle, &fallbackState), "creating the default-backend decoder state");
  }

  bool hardwareCanBatch(const unsigned char* data, size_t length) {
    if (nvjpegJpegStreamParseHeader(handle, data, length, header) != NVJPEG_STATUS_SUCCESS) return false;
    int supported = -1;
    return nvjpegDecodeBatchedSupported(handle, header, &supported) == NVJPEG_STATUS_SUCCESS && supported == 0;
  }
};

DeviceJpegDecoder::DeviceJpegDecoder(int deviceIndex) : impl_(std::make_unique<Impl>()) {
  auto& d = *impl_;
  d.deviceIndex = deviceIndex;
  c10::cuda::CUDAGuard onDevice(static_cast<c10::DeviceIndex>(deviceIndex));
  if (nvjpegCreateEx(NVJPEG_BACKEND_HARDWARE, nullptr, nullptr, NVJPEG_FLAGS_DEFAULT, &d.handle) ==
      NVJPEG_STATUS_SUCCESS) {
    d.hardware = true;
    check(nvjpegJpegStreamCreate(d.handle, &d.header), "creating a JPEG stream");
  } else {
    // NVJPEG_STATUS_ARCH_MISMATCH on GPUs without JPEG engines.
    d.handle = nullptr;
    check(nvjpegCreateEx(NVJPEG_BACKEND_DEFAULT, nullptr, nullptr, NVJPEG_FLAGS_DEFAULT, &d.handle),
          "creating the decoder");
  }
  check(nvjpegJpegStateCreate(d.handle, &d.state), "creating the decoder state");
}

DeviceJpegDecoder::~DeviceJpegDecoder() = default;

std::string DeviceJpegDecoder::backend() const { return impl_->hardware ? "hardware" : "cuda"; }

at::Tensor DeviceJpegDecoder::decode(const HostBatch& batch) {
  auto& d = *impl_;
  const int64_t n = batch.batchSize;
  // nvJPEG works on the thread's current device.
  c10::cuda::CUDAGuard onDevice(static_cast<c10::DeviceIndex>(d.deviceIndex));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(d.deviceIndex)).stream();
  const auto bytesOnDevice = torch::TensorOptions().dtype(torch::kUInt8).device(torch::kCUDA, d.deviceIndex);

  // Headers first, on the host: sizes for the output buffers, and a named error for a bad JPEG
  // before any device work is queued.
  std::vector<torch::Tensor> decoded(n);  // uint8 [3, h, w] each: planar RGB, as nvJPEG writes it
  std::vector<nvjpegImage_t> outputs(n);
  std::vector<const unsigned char*> data(n);
  std::vector<size_t> lengths(n);
  std::vector<int64_t> batched, single;  // positions
  for (int64_t i = 0; i < n; ++i) {
    data[i] = batch.jpegs.data() + batch.jpegOffsets[i];
    lengths[i] = static_cast<size_t>(batch.jpegOffsets[i + 1] - batch.jpegOffsets[i]);
    int components = 0;
    nvjpegChromaSubsampling_t subsampling;
    int widths[NVJPEG_MAX_COMPONENT] = {0}, heights[NVJPEG_MAX_COMPONENT] = {0};
    const auto status = nvjpegGetImageInfo(d.handle, data[i], lengths[i], &components, &subsampling, widths, heights);
    if (status != NVJPEG_STATUS_SUCCESS) throw badJpeg(i, std::string("its header does not parse (") + statusName(status) + ")");
    if ((components != 1 && components != 3) || subsampling == NVJPEG_CSS_UNKNOWN) {
      throw badJpeg(i, "it has " + std::to_string(components) + " colour components (a CMYK or unusual JPEG)");
    }
    const int64_t h = heights[0], w = widths[0];
    decoded[i] = torch::empty({3, h, w}, bytesOnDevice);
    auto* base = decoded[i].data_ptr<uint8_t>();
    for (int c = 0; c < NVJPEG_MAX_COMPONENT; ++c) {
      outputs[i].channel[c] = c < 3 ? base + c * h * w : nullptr;
      outputs[i].pitch[c] = c < 3 ? static_cast<size_t>(w) : 0;
    }
    (!d.hardware || d.hardwareCanBatch(data[i], lengths[i]) ? batched : single).push_back(i);
  }
  // The hardware decoder does not wait for work queued before it on the stream (Hopper; see
  // torchcodec PR #1634). The output buffers may be blocks the caching allocator just took back
  // from kernels still queued (the last batch's resize): let those finish first.
  const auto ready = cudaStreamSynchronize(stream);
  if (ready != cudaSuccess) {
    throw EngineFailure("ERR_ENGINE_DEVICE", std::string("the device failed before nvJPEG decoding: ") + cudaGetErrorString(ready));
  }

  // One file through the default backend: a failure blames the file, or else ends the run.
  const auto decodeAlone = [&](int64_t i) {
    d.ensureFallback();
    const auto status = nvjpegDecode(d.fallbackHandle, d.fallbackState, data[i], lengths[i], NVJPEG_OUTPUT_RGB, &outputs[i], stream);
    if (status == NVJPEG_STATUS_SUCCESS) return;
    drain(stream);
    if (!imageAtFault(status)) check(status, "decoding");
    throw badJpeg(i, std::string("decoding failed (") + statusName(status) + ")");
  };

  if (!batched.empty()) {
    std::vector<const unsigned char*> batchData;
    std::vector<size_t> batchLengths;
    std::vector<nvjpegImage_t> batchOutputs;
    for (const auto i : batched) {
      batchData.push_back(data[i]);
      batchLengths.push_back(lengths[i]);
      batchOutputs.push_back(outputs[i]);
    }
    // Initialised for every batch, as torchvision's decode_jpegs does: it also resets the state
    // after a failed batch.
    check(nvjpegDecodeBatchedInitialize(d.handle, d.state, static_cast<int>(batched.size()), 1, NVJPEG_OUTPUT_RGB),
          "initialising batched decoding");
    const auto status = nvjpegDecodeBatched(d.handle, d.state, batchData.data(), batchLengths.data(), batchOutputs.data(), stream);
    if (status != NVJPEG_STATUS_SUCCESS) {
      drain(stream);
      if (!imageAtFault(status)) check(status, "batched decoding");
      // One of them is damaged: decode them one at a time to name it.
      for (const auto i : batched) decodeAlone(i);
      drain(stream);
      throw badJpeg(batched.front(), std::string("batched decoding failed (") + statusName(status) + ") for one of the " +
                                         std::to_string(batched.size()) +
                                         " JPEGs decoded together from this position on, though each decodes alone");
    }
  }
  for (const auto i : single) decodeAlone(i);
  // nvJPEG reuses its state's buffers and reads the host bytes until its work is done: wait, on
  // this stream only (the copy stream during training: the step before keeps running).
  const auto synced = cudaStreamSynchronize(stream);
  if (synced != cudaSuccess) {
    throw EngineFailure("ERR_ENGINE_DEVICE", std::string("nvJPEG decoding failed on the device: ") + cudaGetErrorString(synced));
  }

  // Resize as sharp does: 'fill' stretches to height x width; 'cover' keeps the aspect ratio and
  // crops the centre. Antialiased bicubic is the nearest LibTorch has to sharp's Lanczos-3.
  namespace F = torch::nn::functional;
  const auto resize = F::InterpolateFuncOptions()
                          .size(std::vector<int64_t>{batch.height, batch.width})
                          .mode(torch::kBicubic)
                          .align_corners(false)
                          .antialias(true);
  for (auto& image : decoded) {
    if (!batch.coverFit) break;
    const int64_t h = image.size(1), w = image.size(2);
    // The largest centred window of the target's aspect ratio.
    const int64_t cropW = std::min(w, (h * batch.width + batch.height / 2) / batch.height);
    const int64_t cropH = std::min(h, (w * batch.height + batch.width / 2) / batch.width);
    image = image.narrow(1, (h - cropH) / 2, cropH).narrow(2, (w - cropW) / 2, cropW);
  }
  std::vector<torch::Tensor> resized;
  for (size_t start = 0; start < decoded.size();) {
    const int64_t floatBytes = decoded[start].numel() * static_cast<int64_t>(sizeof(float));
    size_t end = start + 1;
    while (end < decoded.size() && static_cast<int64_t>(end - start + 1) * floatBytes <= kResizeGroupBytes &&
           decoded[end].sizes() == decoded[start].sizes()) {
      ++end;
    }
    auto group = torch::stack(std::vector<torch::Tensor>(decoded.begin() + start, decoded.begin() + end));
    const bool sameSize = group.size(2) == batch.height && group.size(3) == batch.width;
    if (sameSize) {
      resized.push_back(group);
    } else {
      auto x = group.to(torch::kFloat);
      while (x.size(2) > kMaxAntialiasFactor * batch.height || x.size(3) > kMaxAntialiasFactor * batch.width) {
        x = torch::avg_pool2d(x, {2, 2});
      }
      resized.push_back(F::interpolate(x, resize).round_().clamp_(0, 255).to(torch::kUInt8));
    }
    for (size_t i = start; i < end; ++i) decoded[i] = torch::Tensor();  // free the full-size pixels
    start = end;
  }
  // NCHW -> NHWC bytes, the layout of a host batch.
  return torch::cat(resized).permute({0, 2, 3, 1}).contiguous();
}

}  // namespace engine
