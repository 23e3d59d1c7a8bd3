#include "engine.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "efficientnet.h"
#ifdef ENGINE_WITH_NVJPEG
#include "jpeg_decoder.h"
#endif

// The autocast API moved from CUDA-only functions to per-device-type ones in LibTorch 2.4.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define ENGINE_AUTOCAST_PER_DEVICE 1
#else
#define ENGINE_AUTOCAST_PER_DEVICE 0
#endif

// The device-resident training step needs CUDA and LibTorch >= 2.4: fused AdamW that takes its
// learning rate as a device tensor, and std::optional in the ATen signatures.
#if defined(ENGINE_WITH_CUDA) && ENGINE_AUTOCAST_PER_DEVICE
#define ENGINE_DEVICE_STEP 1
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>
#else
#define ENGINE_DEVICE_STEP 0
#endif
#ifdef ENGINE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace engine {
namespace {

constexpr float kImagenetMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImagenetStd[3] = {0.229f, 0.224f, 0.225f};
// fp16 dynamic loss scaling, as torch.cuda.amp.GradScaler's defaults.
constexpr double kInitialLossScale = 65536.0;
constexpr int64_t kLossScaleGrowthInterval = 2000;

void setCudaAutocast(bool enabled, at::ScalarType dtype) {
#if ENGINE_AUTOCAST_PER_DEVICE
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, enabled);
#else
  at::autocast::set_autocast_gpu_dtype(dtype);
  at::autocast::set_enabled(enabled);
#endif
}

// Autocast for the forward pass only (backward follows the dtypes the forward chose).
class AutocastScope {
 public:
  AutocastScope(bool enabled, at::ScalarType dtype) : enabled_(enabled) {
    if (!enabled_) return;
    setCudaAutocast(true, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!enabled_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    setCudaAutocast(false, at::kFloat);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
};

const std::map<at::ScalarType, std::string>& dtypeNames() {
  static const std::map<at::ScalarType, std::string> names = {
      {at::kFloat, "F32"}, {at::kHalf, "F16"}, {at::kBFloat16, "BF16"}, {at::kDouble, "F64"},
      {at::kLong, "I64"},  {at::kInt, "I32"},  {at::kByte, "U8"},       {at::kBool, "BOOL"}};
  return names;
}

at::ScalarType dtypeFromName(const std::string& tensorName, const std::string& name) {
  for (const auto& [type, typeName] : dtypeNames()) {
    if (typeName == name) return type;
  }
  throw EngineFailure("ERR_ENGINE_STATE",
                      "tensor '" + tensorName + "' has unsupported dtype '" + name + "'");
}

// One copy, from any device and memory layout straight into contiguous host bytes.
HostTensor toHost(const std::string& name, const torch::Tensor& tensor) {
  HostTensor host;
  host.name = name;
  const auto found = dtypeNames().find(tensor.scalar_type());
  if (found == dtypeNames().end()) {
    throw EngineFailure("ERR_ENGINE_STATE", "tensor '" + name + "' has a dtype with no name");
  }
  host.dtype = found->second;
  host.shape.assign(tensor.sizes().begin(), tensor.sizes().end());
  host.data.resize(static_cast<size_t>(tensor.numel()) * tensor.element_size());
  if (host.data.empty()) return host;
  torch::NoGradGuard noGrad;
  torch::from_blob(host.data.data(), tensor.sizes(), torch::TensorOptions().dtype(tensor.scalar_type()))
      .copy_(tensor.detach());
  return host;
}

torch::Tensor fromHost(const HostTensor& host) {
  const auto dtype = dtypeFromName(host.name, host.dtype);
  auto tensor = torch::empty(host.shape, torch::TensorOptions().dtype(dtype));
  if (static_cast<size_t>(tensor.nbytes()) != host.data.size()) {
    std::ostringstream msg;
    msg << "tensor '" << host.name << "' holds " << host.data.size() << " bytes but its shape and "
        << host.dtype << " dtype need " << tensor.nbytes();
    throw EngineFailure("ERR_ENGINE_STATE", msg.str());
  }
  std::memcpy(tensor.data_ptr(), host.data.data(), host.data.size());
  return tensor;
}

std::string shapeText(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

std::string listText(const std::vector<std::string>& names) {
  constexpr size_t kShown = 8;
  std::string text;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) text += (i ? ", " : "") + names[i];
  if (names.size() > kShown) text += " (+" + std::to_string(names.size() - kShown) + " more)";
  return text;
}

// A launched train step. On the host path the step is done at launch and `hostResult` holds it;
// on the device path the report is on its way to `report` (pinned) and `done` marks its arrival.
struct PendingStepImpl : PendingStep {
  TrainStepResult hostResult;
  bool onDevice = false;
  bool endedWindow = false;
#if ENGINE_DEVICE_STEP
  torch::Tensor report;
  at::cuda::CUDAEvent done;
#endif
  bool ready() const override {
#if ENGINE_DEVICE_STEP
    // The worker's idle poll calls this outside any error translation, and query() throws after
    // an asynchronous device fault (illegal address, launch failure): an exception there would
    // end the process. Say "ready" instead; finishing the step then synchronizes inside the
    // addon's translation, meets the same error and rejects the step's Promise with it.
    if (onDevice) {
      try {
        return done.query();
      } catch (...) {
        return true;
      }
    }
#endif
    return true;
  }
};

// LibTorch says "out of memory" on CUDA and "can't allocate memory" (DefaultCPUAllocator) on CPU.
bool isOutOfMemory(const std::string& message) {
  return message.find("out of memory") != std::string::npos ||
         message.find("can't allocate memory") != std::string::npos;
}

}  // namespace

struct Engine::Impl {
  EngineConfig config;
  torch::Device device{torch::kCPU};
  EfficientNet model{nullptr};
  std::vector<std::string> parameterNames;
  std::vector<torch::Tensor> parameters;
  std::vector<torch::Tensor> expAvg, expAvgSq;
  // Parameters that share a learning rate: the head (isHeadTensor) and the backbone.
  // Each counts its own Adam steps, so a backbone unfrozen late starts with a correct bias
  // correction. The tensors are the same handles as above.
  struct ParamGroup {
    std::vector<torch::Tensor> params, expAvg, expAvgSq;
    int64_t steps = 0;
  };
  ParamGroup head, backbone;
  bool backboneFrozen = false;
  int64_t microStep = 0;  // train steps inside the current accumulation window
  double lossScale = 1.0;
  int64_t growthTracker = 0;
  bool autocast = false;
  at::ScalarType autocastDtype = at::kFloat;
  torch::Tensor mean, stddev, posWeight;
  torch::Tensor toYiq, fromYiq;  // RGB <-> YIQ, for hue rotation
  // The engine's own random stream (dropout, stochastic depth, augmentation). On CUDA it is the
  // device's default generator, shared by the engines of a process on that device (CUDA graphs
  // advance that generator's offset on every replay).
  at::Generator generator;
#if ENGINE_DEVICE_STEP
  // ---- The device-resident training step (CUDA) -------------------------------------------
  // Every scalar a step needs (learning rates, Adam step counts, the fp16 loss scale, whether the
  // window's update is skipped) lives in a device tensor, and the optimizer is one fused AdamW
  // launch per parameter group that reads them there. A step then makes no host round trip but
  // the read-back of its report, so it can be captured once as a CUDA graph and replayed: the
  // batch is copied into the graph's fixed input buffers before each replay.
  // The host mirrors (head.steps, backbone.steps, lossScale) are refreshed from every report, so
  // checkpoints and results read them as on CPU.
  bool deviceStep = false;
  struct DeviceScalars {
    torch::Tensor lrHead, lrBackbone;        // float, 0-dim
    torch::Tensor headSteps, backboneSteps;  // float, 0-dim (fused AdamW reads its step there)
    torch::Tensor lossScale;                 // float, 0-dim: 1 unless fp16
    torch::Tensor growthTracker;             // int32, 0-dim: steps since the fp16 scale last changed
    torch::Tensor skipWindow;                // float, 0-dim: 1 = skip this window's update
    // float, 0-dim: a non-finite loss was seen (fp32/bf16): every update is skipped until the
    // host has reported it. Steps launched behind the failing one then change nothing either.
    torch::Tensor halted;
    torch::Tensor report;                    // float [5]: see ReportSlot
    torch::Tensor reportHost;                // pinned copy of report
  } scalars;
  enum ReportSlot { kLoss = 0, kSkipped, kScale, kHeadSteps, kBackboneSteps, kReportSize };
  // The graphs of one batch shape and frozen state, with their fixed inputs.
  struct GraphedStep {
    int64_t n = 0, h = 0, w = 0;
    bool frozen = false;
    torch::Tensor images, labels;                // uint8 [n, h, w, 3], float [n]
    HeadInputs headInputs;                       // metadata float [n, m], groups int64 [n]
    std::unique_ptr<at::cuda::CUDAGraph> micro;  // forward + backward (inside a window)
    std::unique_ptr<at::cuda::CUDAGraph> last;   // forward + backward + optimizer (ends a window)
    bool fits(const HostBatch& batch, bool frozenNow) const {
      return n == batch.batchSize && h == batch.height && w == batch.width && frozen == frozenNow;
    }
  };
  std::unique_ptr<GraphedStep> graphed;
  // Warm-up and every capture run on this one side stream (as torch.cuda.graph's default capture
  // stream): its cuBLAS workspace is then made during warm-up, never inside a capture.
  std::optional<c10::cuda::CUDAStream> captureStream;
  // Batches cross to the device on this stream, so a batch's copy overlaps the step before it.
  std::optional<c10::cuda::CUDAStream> copyStream;
  // A capture that failed can leave LibTorch's CUDA generator in capture state, after which every
  // random draw on the device fails: later graph steps report the first failure instead.
  std::string captureFailure;
  int64_t stepsInFlight = 0;     // launched, result not read yet
#endif
#ifdef ENGINE_WITH_NVJPEG
  // Made on the first JPEG batch; mutable because decoding is part of reading a batch, which
  // const methods (evaluate, previewAugment) do too.
  mutable std::unique_ptr<DeviceJpegDecoder> jpegDecoder;
#endif
  // Set by a non-finite loss (fp32/bf16): train steps are refused, on every device alike, until
  // a checkpoint is imported (importState), so what a failure leaves does not depend on timing.
  std::string haltedBy;
  // After a halt: whether the failed batch's forward pass left non-finite BatchNorm running
  // statistics (its update was skipped, but those change in the forward pass itself). Found on
  // the first use after the halt, so the training step paths stay as they are.
  enum class HaltedStatistics { unchecked, finite, corrupt } haltedStatistics = HaltedStatistics::unchecked;

  explicit Impl(const EngineConfig& cfg) : config(cfg) {
    if (config.device == "cuda") {
      if (!torch::cuda::is_available()) {
        throw EngineFailure(
            "ERR_ENGINE_DEVICE",
            std::string("CUDA was requested (--device cuda) but this LibTorch ") + TORCH_VERSION +
                " build sees no CUDA device: use --device cpu, or build the engine against a "
                "CUDA LibTorch (npm run build:engine with Torch_DIR/CMAKE_PREFIX_PATH set)");
      }
      device = torch::Device(torch::kCUDA, 0);
      // Fixed input shapes: let cuDNN pick the fastest kernels once. TF32 for fp32 matmuls through
      // the API that LibTorch 1.12 to 2.x all keep (cuDNN convolutions allow TF32 by default).
      at::globalContext().setBenchmarkCuDNN(true);
      at::globalContext().setFloat32MatmulPrecision("high");
    }
    autocast = device.is_cuda() && config.precision != "fp32";
    autocastDtype = config.precision == "fp16" ? at::kHalf : at::kBFloat16;
    lossScale = config.precision == "fp16" ? kInitialLossScale : 1.0;

    {
      // Initialisation draws from LibTorch's global generator: seed it and build under a lock, so
      // engines created at the same time still get the weights their seed gives.
      static std::mutex initialisation;
      std::lock_guard<std::mutex> lock(initialisation);
      torch::manual_seed(config.seed);
      generator = device.is_cuda() ? at::globalContext().defaultGenerator(device)
                                   : at::make_generator<at::CPUGeneratorImpl>(config.seed);
      model = EfficientNet(config.model, generator);
    }
    model->to(device);
    if (config.channelsLast) {
      torch::NoGradGuard noGrad;
      for (auto& p : model->parameters()) {
        if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
      }
    }
    for (const auto& item : model->named_parameters()) {
      parameterNames.push_back(item.key());
      parameters.push_back(item.value());
      expAvg.push_back(torch::zeros_like(item.value()));
      expAvgSq.push_back(torch::zeros_like(item.value()));
      auto& group = isHeadTensor(item.key()) ? head : backbone;
      group.params.push_back(parameters.back());
      group.expAvg.push_back(expAvg.back());
      group.expAvgSq.push_back(expAvgSq.back());
    }
    const auto floatOnDevice = torch::TensorOptions().dtype(torch::kFloat).device(device);
    mean = torch::from_blob(const_cast<float*>(kImagenetMean), {1, 3, 1, 1}).to(floatOnDevice);
    stddev = torch::from_blob(const_cast<float*>(kImagenetStd), {1, 3, 1, 1}).to(floatOnDevice);
    posWeight = torch::full({1}, config.posWeight, floatOnDevice);
    toYiq = torch::tensor({0.299, 0.587, 0.114, 0.596, -0.274, -0.322, 0.211, -0.523, 0.312})
                .view({3, 3})
                .to(floatOnDevice);
    fromYiq = torch::inverse(toYiq);
    if (config.cudaGraph && !device.is_cuda()) {
      throw EngineFailure("ERR_ENGINE_DEVICE",
                          "CUDA graphs (cudaGraph) need --device cuda; turn them off on CPU");
    }
#if ENGINE_DEVICE_STEP
    deviceStep = device.is_cuda();
    if (deviceStep) initDeviceScalars();
#else
    if (config.cudaGraph) {
      throw EngineFailure("ERR_ENGINE_DEVICE",
                          std::string("this engine was built against LibTorch ") + TORCH_VERSION +
                              " without CUDA graph support (it needs a CUDA LibTorch >= 2.4): "
                              "train without CUDA graphs (--no-cuda-graph)");
    }
#endif
    if (config.nvjpeg) {
#ifdef ENGINE_WITH_NVJPEG
      jpegDecoderOrRefuse();
#else
      refuseJpegs();
#endif
    }
  }

  // The batch's uint8 NHWC images as a tensor over the caller's memory (no copy).
  static torch::Tensor hostImages(const HostBatch& batch) {
    return torch::from_blob(const_cast<uint8_t*>(batch.images.data()),
                            {batch.batchSize, batch.height, batch.width, 3}, torch::kUInt8);
  }

  // uint8 NHWC -> float NCHW in [0, 1] (channels_last strides: the permuted NHWC buffer already
  // has them, so the layout costs no copy).
  static torch::Tensor unitFromBytes(const torch::Tensor& nhwc) {
    return nhwc.permute({0, 3, 1, 2}).to(torch::kFloat).div_(255.0f);
  }

  // The batch's uint8 NHWC images on the engine's device, queued on the current stream: the
  // caller's pixels (through pinned memory on CUDA: an async copy), or its JPEGs decoded there.
  torch::Tensor deviceImages(const HostBatch& batch) const {
    if (batch.hasJpegs()) return decodedJpegs(batch);
    auto host = hostImages(batch);
    return device.is_cuda() ? host.pin_memory().to(device, /*non_blocking=*/true) : host;
  }

  // Refuses JPEG batches where there is no GPU decoder: a CPU engine, or a build without nvJPEG.
  [[noreturn]] void refuseJpegs() const {
    throw EngineFailure("ERR_ENGINE_DEVICE",
                        device.is_cuda()
                            ? "this engine was built without nvJPEG (CMake found no CUDA::nvjpeg), so it cannot "
                              "decode JPEGs on the GPU: decode on the CPU (--decode sharp), or rebuild where the "
                              "CUDA toolkit has nvjpeg"
                            : "JPEG batches are decoded on the GPU (nvJPEG) and this engine runs on the CPU: "
                              "decode on the CPU (--decode sharp), or train on CUDA");
  }

#ifdef ENGINE_WITH_NVJPEG
  DeviceJpegDecoder& jpegDecoderOrRefuse() const {
    if (!device.is_cuda()) refuseJpegs();
    if (!jpegDecoder) jpegDecoder = std::make_unique<DeviceJpegDecoder>(device.index());
    return *jpegDecoder;
  }
  torch::Tensor decodedJpegs(const HostBatch& batch) const { return jpegDecoderOrRefuse().decode(batch); }
#else
  [[noreturn]] torch::Tensor decodedJpegs(const HostBatch&) const { refuseJpegs(); }
#endif

  // Host batch -> [0, 1] floats on the device.
  torch::Tensor unitTensor(const HostBatch& batch) const { return unitFromBytes(deviceImages(batch)); }

  // The network's input: optionally augmented (train steps only), then ImageNet-normalised.
  torch::Tensor inputTensor(const HostBatch& batch, bool augmented) const {
    return normalisedInput(unitTensor(batch), augmented);
  }

  torch::Tensor normalisedInput(torch::Tensor x, bool augmented) const {
    if (augmented && config.augment.any()) x = augment(x);
    x = (x - mean) / stddev;
    return config.channelsLast ? x.contiguous(at::MemoryFormat::ChannelsLast) : x.contiguous();
  }

  // Per-image random augmentation of a [N, 3, H, W] batch in [0, 1], on its device. Each draw is
  // made whether or not its transform fires, so the random stream depends only on the
  // configuration (and a resumed run draws what an uninterrupted one would).
  torch::Tensor augment(torch::Tensor x) const {
    const auto& a = config.augment;
    const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
    const auto options = x.options();
    const auto draw = [&] { return torch::rand({n}, generator, options); };
    const auto happens = [&](double p) { return (draw() < p).to(torch::kFloat); };
    const auto symmetric = [&](double magnitude) { return (draw() * 2 - 1) * magnitude; };
    const auto perImage = [&](const torch::Tensor& v) { return v.view({n, 1, 1, 1}); };

    // Geometry: flips, transpose, rotation, scale and shift composed into one affine map per
    // image (output -> input coordinates in [-1, 1]), sampled once with reflection at borders.
    if (a.flip > 0 || a.transpose > 0 || a.affine > 0) {
      const auto flipX = 1 - 2 * happens(a.flip);
      const auto flipY = 1 - 2 * happens(a.flip);
      const auto transposed = happens(a.transpose);
      const auto warp = happens(a.affine);
      const auto angle = symmetric(a.rotateDegrees * M_PI / 180.0) * warp;
      const auto zoom = 1 + symmetric(a.scale) * warp;
      const auto shiftX = symmetric(2 * a.shift) * warp;
      const auto shiftY = symmetric(2 * a.shift) * warp;
      const auto cos = torch::cos(angle) / zoom, sin = torch::sin(angle) / zoom;
      // Rotation/zoom, then transpose (swap columns), then flips (negate columns).
      auto m00 = cos, m01 = -sin, m10 = sin, m11 = cos;
      auto t00 = m00 * (1 - transposed) + m01 * transposed;
      auto t01 = m01 * (1 - transposed) + m00 * transposed;
      auto t10 = m10 * (1 - transposed) + m11 * transposed;
      auto t11 = m11 * (1 - transposed) + m10 * transposed;
      const auto theta = torch::stack({torch::stack({t00 * flipX, t01 * flipY, shiftX}, 1),
                                       torch::stack({t10 * flipX, t11 * flipY, shiftY}, 1)},
                                      1);
      const auto grid = torch::affine_grid_generator(theta, {n, 3, h, w}, /*align_corners=*/false);
      x = torch::grid_sampler(x, grid, /*bilinear*/ 0, /*reflection*/ 2, /*align_corners=*/false);
    }

    // Colour: brightness, contrast, saturation, hue, in this fixed order.
    if (a.brightness > 0) x = x * perImage(1 + symmetric(a.brightnessMagnitude) * happens(a.brightness));
    const auto luma = [](const torch::Tensor& img) {
      return (0.299 * img.select(1, 0) + 0.587 * img.select(1, 1) + 0.114 * img.select(1, 2))
          .unsqueeze(1);
    };
    if (a.contrast > 0) {
      const auto factor = perImage(1 + symmetric(a.contrastMagnitude) * happens(a.contrast));
      const auto meanGrey = luma(x).mean({2, 3}, /*keepdim=*/true);
      x = (x - meanGrey) * factor + meanGrey;
    }
    if (a.saturation > 0) {
      const auto factor = perImage(1 + symmetric(a.saturationMagnitude) * happens(a.saturation));
      const auto grey = luma(x);
      x = (x - grey) * factor + grey;
    }
    if (a.hue > 0) {
      // Hue rotation: rotate the chroma plane of YIQ by the drawn angle.
      const auto angle = symmetric(a.hueMagnitude * 2 * M_PI) * happens(a.hue);
      const auto c = torch::cos(angle), s = torch::sin(angle);
      const auto one = torch::ones_like(c), zero = torch::zeros_like(c);
      const auto rotation = torch::stack({one, zero, zero, zero, c, -s, zero, s, c}, 1).view({n, 3, 3});
      const auto transform = fromYiq.matmul(rotation).matmul(toYiq);  // [n, 3, 3]
      x = torch::einsum("nij,njhw->nihw", {transform, x});
    }
    x = x.clamp(0, 1);

    if (a.cutout > 0) {
      // One square hole per image, filled with the ImageNet mean (zero after normalisation).
      const auto apply = happens(a.cutout).view({n, 1, 1}).to(torch::kBool);
      const auto centreY = (draw() * h).view({n, 1, 1});
      const auto centreX = (draw() * w).view({n, 1, 1});
      const double half = a.cutoutSize * static_cast<double>(std::min(h, w)) / 2;
      const auto ys = torch::arange(h, options).view({1, h, 1}) + 0.5;
      const auto xs = torch::arange(w, options).view({1, 1, w}) + 0.5;
      const auto hole = ((ys - centreY).abs() < half) & ((xs - centreX).abs() < half) & apply;
      x = torch::where(hole.unsqueeze(1), mean.expand_as(x), x);
    }
    return x;
  }

  // The augmented images as uint8 NHWC, so a person (or a test) can look at what training sees.
  std::vector<uint8_t> previewAugment(const HostBatch& batch) const {
    torch::NoGradGuard noGrad;
    auto x = augment(unitTensor(batch));
    auto bytes = x.mul(255).round_().clamp_(0, 255).to(torch::kUInt8).permute({0, 2, 3, 1})
                     .contiguous().to(torch::kCPU);
    return std::vector<uint8_t>(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
  }

  // The batch's metadata as a [N, features] host tensor (undefined for a model without a
  // metadata branch); its size is checked here, as the model cannot run without it.
  torch::Tensor hostMetadata(const HostBatch& batch) const {
    const int64_t features = config.model.metadataFeatures;
    if (features == 0) return {};
    if (static_cast<int64_t>(batch.metadata.size()) != batch.batchSize * features) {
      std::ostringstream msg;
      msg << "this model takes " << features << " metadata values per image (a Float32Array of "
          << batch.batchSize * features << " for this batch) but '" << batch.fieldPrefix
          << "metadata' has " << batch.metadata.size() << ": give each batch its '"
          << batch.fieldPrefix << "metadata'";
      throw EngineFailure("ERR_ENGINE_STATE", msg.str());
    }
    return torch::from_blob(const_cast<float*>(batch.metadata.data()), {batch.batchSize, features},
                            torch::kFloat);
  }

  // The batch's patients as an int64 [N] host tensor (undefined for a model without patient
  // context). A batch without groups is one of single images: each is its own patient.
  torch::Tensor hostGroups(const HostBatch& batch) const {
    if (config.model.contextDim == 0) return {};
    if (batch.groups.empty()) return torch::arange(batch.batchSize, torch::kLong);
    if (static_cast<int64_t>(batch.groups.size()) != batch.batchSize) {
      std::ostringstream msg;
      msg << "the batch's 'groups' has " << batch.groups.size() << " values for " << batch.batchSize
          << " images: give one patient number per image";
      throw EngineFailure("ERR_ENGINE_STATE", msg.str());
    }
    return torch::from_blob(const_cast<int32_t*>(batch.groups.data()), {batch.batchSize}, torch::kInt)
        .to(torch::kLong);
  }

  HeadInputs hostHeadInputs(const HostBatch& batch) const {
    return {hostMetadata(batch), hostGroups(batch)};
  }

  // The head's inputs on the device, owning their memory (the batch's may go once this returns).
  HeadInputs headInputsTensor(const HostBatch& batch) const {
    auto inputs = hostHeadInputs(batch);
    for (auto* tensor : {&inputs.metadata, &inputs.groups}) {
      if (tensor->defined()) *tensor = tensor->to(device).clone();
    }
    return inputs;
  }

  // The batch's labels as a host tensor over its memory (no copy).
  static torch::Tensor hostLabels(const HostBatch& batch) {
    return torch::from_blob(const_cast<float*>(batch.labels.data()),
                            {static_cast<int64_t>(batch.labels.size())}, torch::kFloat);
  }

  torch::Tensor labelTensor(const HostBatch& batch) const {
    return hostLabels(batch).to(device).clone();
  }

  torch::Tensor loss(const torch::Tensor& logits, torch::Tensor targets, int64_t reduction) const {
    if (config.labelSmoothing > 0) {
      targets = targets * (1.0 - config.labelSmoothing) + 0.5 * config.labelSmoothing;
    }
    return torch::binary_cross_entropy_with_logits(logits.to(torch::kFloat), targets, {},
                                                   posWeight, reduction);
  }

  void setTrainingMode() {
    model->train();
    if (backboneFrozen) {
      // The frozen feature extractor runs as at evaluation (BatchNorm statistics kept, no
      // stochastic depth); the head's dropout stays on (it follows the model's own mode).
      for (auto& child : model->children()) child->eval();
      return;
    }
    if (!config.freezeBatchNorm) return;
    for (auto& module : model->modules(/*include_self=*/false)) {
      if (auto* bn = module->as<torch::nn::BatchNorm2d>()) bn->eval();
    }
  }

  void zeroGradients() {
    for (auto& p : parameters) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
  }

  // Frozen parameters compute no gradients; their old ones are dropped to free the memory.
  void setBackboneFrozen(bool frozen) {
    if (frozen == backboneFrozen) return;
    backboneFrozen = frozen;
    for (auto& p : backbone.params) {
      p.requires_grad_(!frozen);
      if (frozen) p.mutable_grad() = torch::Tensor();
    }
  }

  std::vector<torch::Tensor> gradients(ParamGroup& group) {
    std::vector<torch::Tensor> grads;
    grads.reserve(group.params.size());
    for (auto& p : group.params) {
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      grads.push_back(p.grad());
    }
    return grads;
  }

  // fp16: unscale the gradients and tell whether they are finite; shrink or grow the scale as
  // GradScaler does. Returns false when the step must be skipped.
  bool unscaleGradients(std::vector<torch::Tensor>& grads) {
    if (config.precision != "fp16") return true;
    at::_foreach_mul_(grads, 1.0 / lossScale);
    const bool finite = torch::stack(at::_foreach_norm(grads)).isfinite().all().item<bool>();
    if (!finite) {
      lossScale *= 0.5;
      growthTracker = 0;
      checkLossScale();
      return false;
    }
    if (++growthTracker == kLossScaleGrowthInterval) {
      lossScale *= 2.0;
      growthTracker = 0;
    }
    return true;
  }

  // torch.optim.Adam's update (torch.optim.AdamW's when weightDecay > 0: decoupled decay), with
  // multi-tensor (_foreach) kernels: a handful of launches instead of ~10 per parameter tensor.
  void adamStep(ParamGroup& group, std::vector<torch::Tensor>& grads, double lr) {
    if (group.params.empty()) return;
    const auto step = static_cast<double>(++group.steps);
    const double bias1 = 1.0 - std::pow(config.beta1, step);
    const double bias2 = 1.0 - std::pow(config.beta2, step);
    if (config.weightDecay > 0) at::_foreach_mul_(group.params, 1.0 - lr * config.weightDecay);
    at::_foreach_mul_(group.expAvg, config.beta1);
    at::_foreach_add_(group.expAvg, grads, 1.0 - config.beta1);
    at::_foreach_mul_(group.expAvgSq, config.beta2);
    at::_foreach_addcmul_(group.expAvgSq, grads, grads, 1.0 - config.beta2);
    auto denom = at::_foreach_sqrt(group.expAvgSq);
    at::_foreach_div_(denom, std::sqrt(bias2));
    at::_foreach_add_(denom, config.eps);
    at::_foreach_addcdiv_(group.params, group.expAvg, denom, -lr / bias1);
  }

#if ENGINE_DEVICE_STEP
  void initDeviceScalars() {
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device);
    scalars.lrHead = torch::zeros({}, f32);
    scalars.lrBackbone = torch::zeros({}, f32);
    scalars.headSteps = torch::zeros({}, f32);
    scalars.backboneSteps = torch::zeros({}, f32);
    scalars.lossScale = torch::full({}, lossScale, f32);
    scalars.growthTracker = torch::zeros({}, f32.dtype(torch::kInt));
    scalars.skipWindow = torch::zeros({}, f32);
    scalars.halted = torch::zeros({}, f32);
    scalars.report = torch::zeros({kReportSize}, f32);
    scalars.reportHost = torch::zeros({kReportSize}, torch::TensorOptions().dtype(torch::kFloat).pinned_memory(true));
    captureStream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    copyStream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
  }

  // The batch on the device, copied on the copy stream from pinned memory; the current (compute)
  // stream waits for that copy, and the allocator keeps the memory until the compute is done.
  struct DeviceBatch {
    torch::Tensor images, labels;
    HeadInputs headInputs;
  };
  DeviceBatch batchOnDevice(const HostBatch& batch) {
    const auto compute = c10::cuda::getCurrentCUDAStream(device.index());
    const auto host = hostHeadInputs(batch);
    DeviceBatch onDevice;
    {
      c10::cuda::CUDAStreamGuard onCopyStream(*copyStream);
      onDevice.images = deviceImages(batch);  // decoding JPEGs here overlaps the step before too
      onDevice.labels = hostLabels(batch).pin_memory().to(device, /*non_blocking=*/true);
      if (host.metadata.defined()) onDevice.headInputs.metadata = host.metadata.pin_memory().to(device, /*non_blocking=*/true);
      if (host.groups.defined()) onDevice.headInputs.groups = host.groups.pin_memory().to(device, /*non_blocking=*/true);
    }
    streamWaits(compute, *copyStream);
    for (auto* tensor : {&onDevice.images, &onDevice.labels, &onDevice.headInputs.metadata, &onDevice.headInputs.groups}) {
      if (tensor->defined()) tensor->record_stream(compute);
    }
    return onDevice;
  }

  // Host bytes -> a device tensor that already exists (the graphs' fixed inputs), through pinned
  // memory and an async copy on the current stream.
  static void stageInto(torch::Tensor& target, const torch::Tensor& host) {
    target.copy_(host.pin_memory(), /*non_blocking=*/true);
  }

  // After a checkpoint import: the device copies follow the host values.
  void pushScalarsToDevice() {
    scalars.headSteps.fill_(static_cast<double>(head.steps));
    scalars.backboneSteps.fill_(static_cast<double>(backbone.steps));
    scalars.lossScale.fill_(lossScale);
    scalars.growthTracker.zero_();
    scalars.skipWindow.zero_();
    scalars.halted.zero_();
  }

  // Forward, loss and backward of one micro-batch, accumulating into the gradient buffers. Device
  // work only (capturable). A non-finite loss marks the window skipped; the host reports it.
  void forwardBackwardOnDevice(const torch::Tensor& images, const torch::Tensor& labels,
                               const HeadInputs& headInputs) {
    const auto x = normalisedInput(unitFromBytes(images), /*augmented=*/true);
    torch::Tensor logits;
    {
      AutocastScope scope(autocast, autocastDtype);
      logits = model->forward(x, headInputs);
    }
    const auto lossTensor = loss(logits, labels, at::Reduction::Mean);
    {
      torch::NoGradGuard noGrad;
      const auto value = lossTensor.detach();
      const auto nonFinite = value.isfinite().logical_not().to(torch::kFloat);
      scalars.skipWindow.copy_(torch::maximum(scalars.skipWindow, nonFinite));
      // fp16 overflows are routine (the loss scale adapts); elsewhere a non-finite loss is fatal.
      if (config.precision != "fp16") scalars.halted.copy_(torch::maximum(scalars.halted, nonFinite));
      scalars.report.select(0, kLoss).copy_(value);
    }
    (lossTensor * (scalars.lossScale / static_cast<double>(config.accumulateSteps))).backward();
  }

  // One fused AdamW launch for a group; skipped on the device when skipWindow is set (the step
  // count then stays, as torch.optim's fused Adam with GradScaler does).
  void fusedAdamW(ParamGroup& group, const std::vector<torch::Tensor>& grads, torch::Tensor& steps,
                  const torch::Tensor& lr) {
    if (group.params.empty()) return;
    steps.add_(1).sub_(scalars.skipWindow);
    const std::vector<torch::Tensor> stepPerParam(group.params.size(), steps);
    at::_fused_adamw_(group.params, grads, group.expAvg, group.expAvgSq, /*max_exp_avg_sqs=*/{},
                      stepPerParam, lr, config.beta1, config.beta2, config.weightDecay, config.eps,
                      /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/{},
                      /*found_inf=*/scalars.skipWindow);
  }

  // Ends a window on the device: fp16 unscale and overflow check, fused AdamW per group, the
  // loss-scale update (GradScaler's rule), the report, zeroed gradients. Capturable.
  // gradFactor != 1 turns a window cut short into a mean (eager flush only).
  void optimizerOnDevice(double gradFactor) {
    torch::NoGradGuard noGrad;
    auto headGrads = gradients(head);
    auto backboneGrads = backboneFrozen ? std::vector<torch::Tensor>() : gradients(backbone);
    auto allGrads = headGrads;
    allGrads.insert(allGrads.end(), backboneGrads.begin(), backboneGrads.end());
    if (gradFactor != 1.0) at::_foreach_mul_(allGrads, gradFactor);
    const bool fp16 = config.precision == "fp16";
    if (!fp16) scalars.skipWindow.copy_(torch::maximum(scalars.skipWindow, scalars.halted));
    if (fp16) {
      at::_amp_foreach_non_finite_check_and_unscale_(allGrads, scalars.skipWindow,
                                                    scalars.lossScale.reciprocal());
    }
    fusedAdamW(head, headGrads, scalars.headSteps, scalars.lrHead);
    if (!backboneFrozen) fusedAdamW(backbone, backboneGrads, scalars.backboneSteps, scalars.lrBackbone);
    if (fp16) {
      at::_amp_update_scale_(scalars.lossScale, scalars.growthTracker, scalars.skipWindow,
                             /*scale_growth_factor=*/2.0, /*scale_backoff_factor=*/0.5,
                             kLossScaleGrowthInterval);
    }
    scalars.report.select(0, kSkipped).copy_(scalars.skipWindow);
    scalars.report.select(0, kScale).copy_(scalars.lossScale);
    scalars.report.select(0, kHeadSteps).copy_(scalars.headSteps);
    scalars.report.select(0, kBackboneSteps).copy_(scalars.backboneSteps);
    at::_foreach_zero_(allGrads);
    scalars.skipWindow.zero_();
  }

  static void streamWaits(const c10::cuda::CUDAStream& waiter, const c10::cuda::CUDAStream& on) {
    at::cuda::CUDAEvent event;
    event.record(on);
    event.block(waiter);
  }

  // Captures the graphs of this batch's shape (and frozen state), replacing older ones.
  void ensureGraphs(const HostBatch& batch) {
    if (!captureFailure.empty()) {
      const bool outOfMemory = isOutOfMemory(captureFailure);
      throw EngineFailure(outOfMemory ? "ERR_ENGINE_OOM" : "ERR_ENGINE_TORCH", captureFailure);
    }
    if (graphed && graphed->fits(batch, backboneFrozen)) return;
    graphed.reset();  // frees the old graphs and their memory pool first
    // One capture at a time in the process: a capture in global mode forbids unsafe CUDA calls
    // from every thread, so two engines must not capture at once. (Another engine's eager work on
    // the same GPU during a capture can still fail it: train one graph-mode engine per GPU.)
    static std::mutex captureInProgress;
    std::lock_guard<std::mutex> oneCapture(captureInProgress);
    auto g = std::make_unique<GraphedStep>();
    g->n = batch.batchSize;
    g->h = batch.height;
    g->w = batch.width;
    g->frozen = backboneFrozen;
    g->images = torch::zeros({g->n, g->h, g->w, 3}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
    g->labels = torch::zeros({g->n}, torch::TensorOptions().dtype(torch::kFloat).device(device));
    g->images.copy_(deviceImages(batch), /*non_blocking=*/true);
    stageInto(g->labels, hostLabels(batch));
    const auto host = hostHeadInputs(batch);
    for (const auto& [target, source] : {std::pair(&g->headInputs.metadata, host.metadata),
                                          std::pair(&g->headInputs.groups, host.groups)}) {
      if (!source.defined()) continue;
      *target = torch::zeros_like(source, torch::TensorOptions().device(device));
      stageInto(*target, source);
    }
    // The backward accumulates into the gradients in place, at addresses the graphs keep: they
    // must exist before capture.
    gradients(head);
    if (!backboneFrozen) gradients(backbone);
    warmUpForCapture(*g);
    // The warm-up's activations sit in the ordinary pool; the capture allocates its own set in the
    // graph's private pool. Give that memory back first (torch.cuda.graph does the same).
    c10::cuda::device_synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    try {
      g->last = captureStep(*g, /*endsWindow=*/true, /*pool=*/{0, 0});
      if (config.accumulateSteps > 1) g->micro = captureStep(*g, /*endsWindow=*/false, g->last->pool());
    } catch (const std::exception& e) {
      const auto* torchError = dynamic_cast<const c10::Error*>(&e);
      const std::string cause = torchError ? torchError->what_without_backtrace() : e.what();
      // Out of memory keeps its own code and advice: a smaller batch captures, so the way out is
      // not --no-cuda-graph. Either way this engine stays refused: a failed capture can leave
      // the generator registered with a graph that never ran.
      const bool outOfMemory = isOutOfMemory(cause);
      captureFailure = std::string("CUDA graph capture of the training step failed: ") + cause +
                       (outOfMemory ? ". Lower --batch-size or --image-size (or use --accumulate to keep "
                                      "the effective batch) and start again"
                                    : ". This process cannot train in graph mode any more (and may not "
                                      "draw random numbers on the GPU): restart it with --no-cuda-graph");
      throw EngineFailure(outOfMemory ? "ERR_ENGINE_OOM" : "ERR_ENGINE_TORCH", captureFailure);
    }
    graphed = std::move(g);
  }

  // Lazy initialisation (cuDNN autotuning, cuBLAS workspaces, kernel loading, autograd's stream
  // set-up) must not happen during capture, so the whole step first runs eagerly on a side stream,
  // as PyTorch's whole-network capture recipe does. Those runs train nothing: each has its update
  // skipped, and the BatchNorm statistics, gradients, scalars and random stream are put back.
  void warmUpForCapture(GraphedStep& g) {
    constexpr int kWarmUpRuns = 3;
    torch::NoGradGuard noGrad;
    std::vector<std::pair<torch::Tensor, torch::Tensor>> saved;
    for (auto& buffer : model->buffers()) saved.emplace_back(buffer, buffer.clone());
    for (auto& p : parameters) {
      if (p.grad().defined()) saved.emplace_back(p.mutable_grad(), p.grad().clone());
    }
    for (auto* scalar : {&scalars.headSteps, &scalars.backboneSteps, &scalars.lossScale,
                         &scalars.growthTracker, &scalars.skipWindow, &scalars.halted, &scalars.report}) {
      saved.emplace_back(*scalar, scalar->clone());
    }
    torch::Tensor rng;
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      rng = generator.get_state();
    }
    const auto compute = c10::cuda::getCurrentCUDAStream(device.index());
    const auto side = *captureStream;
    const auto restore = [&] {
      streamWaits(compute, side);
      for (auto& [target, copy] : saved) target.copy_(copy);
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(rng);
    };
    streamWaits(side, compute);
    try {
      c10::cuda::CUDAStreamGuard onSide(side);
      for (int run = 0; run < kWarmUpRuns; ++run) {
        scalars.skipWindow.fill_(1);
        {
          torch::AutoGradMode enableGrad(true);
          forwardBackwardOnDevice(g.images, g.labels, g.headInputs);
        }
        optimizerOnDevice(1.0);
      }
    } catch (...) {
      // E.g. out of memory at a large batch: put everything back (a pending window's gradients,
      // skipWindow, the loss scale, BatchNorm statistics) so the error leaves the state as it was.
      try {
        restore();
      } catch (...) {
        // The device itself failed: the original error says more.
      }
      throw;
    }
    restore();
  }

  std::unique_ptr<at::cuda::CUDAGraph> captureStep(GraphedStep& g, bool endsWindow,
                                                   at::cuda::MempoolId_t pool) {
    auto graph = std::make_unique<at::cuda::CUDAGraph>();
    const auto compute = c10::cuda::getCurrentCUDAStream(device.index());
    const auto side = *captureStream;
    streamWaits(side, compute);
    {
      c10::cuda::CUDAStreamGuard onSide(side);
      torch::AutoGradMode enableGrad(true);  // the captured step records a backward
      graph->capture_begin(pool);
      try {
        forwardBackwardOnDevice(g.images, g.labels, g.headInputs);
        if (endsWindow) optimizerOnDevice(1.0);
      } catch (...) {
        try {
          graph->capture_end();  // leaves the stream out of capture mode before the error goes up
        } catch (...) {
        }
        throw;
      }
      graph->capture_end();
    }
    streamWaits(compute, side);
    return graph;
  }

  // The report of the work queued so far, waiting for it (flush, benchmarks).
  TrainStepResult readReport(bool endedWindow) {
    scalars.reportHost.copy_(scalars.report, /*non_blocking=*/true);
    at::cuda::CUDAEvent ready;
    ready.record(c10::cuda::getCurrentCUDAStream(device.index()));
    ready.synchronize();
    return parseReport(scalars.reportHost.data_ptr<float>(), endedWindow);
  }

  // A step's report, read on the host; refreshes the host mirrors when the step ended a window.
  TrainStepResult parseReport(const float* report, bool endedWindow) {
    TrainStepResult result;
    result.loss = report[kLoss];
    if (endedWindow) {
      head.steps = static_cast<int64_t>(report[kHeadSteps]);
      backbone.steps = static_cast<int64_t>(report[kBackboneSteps]);
      lossScale = report[kScale];
      const bool skipped = report[kSkipped] > 0;
      result.optimizerStepped = !skipped;
      result.overflowSkipped = skipped && config.precision == "fp16";
    }
    result.step = head.steps;
    result.lossScale = lossScale;
    return result;
  }

  // Device to device into the graphs' fixed inputs: microseconds.
  void loadGraphInputs(const DeviceBatch& onDevice) {
    graphed->images.copy_(onDevice.images);
    graphed->labels.copy_(onDevice.labels);
    if (onDevice.headInputs.metadata.defined()) graphed->headInputs.metadata.copy_(onDevice.headInputs.metadata);
    if (onDevice.headInputs.groups.defined()) graphed->headInputs.groups.copy_(onDevice.headInputs.groups);
  }

  // Queues one step on the device and the copy of its report, without waiting for either.
  void launchOnDevice(const HostBatch& batch, PendingStepImpl& pending) {
    const bool endsWindow = microStep + 1 == config.accumulateSteps;
    scalars.lrHead.fill_(batch.lr);
    scalars.lrBackbone.fill_(batch.backboneLr);
    if (config.cudaGraph) ensureGraphs(batch);
    const auto onDevice = batchOnDevice(batch);
    if (config.cudaGraph) {
      loadGraphInputs(onDevice);
      (endsWindow ? graphed->last : graphed->micro)->replay();
    } else {
      forwardBackwardOnDevice(onDevice.images, onDevice.labels, onDevice.headInputs);
      if (endsWindow) optimizerOnDevice(1.0);
    }
    microStep = endsWindow ? 0 : microStep + 1;
    pending.onDevice = true;
    pending.endedWindow = endsWindow;
    // Its own pinned buffer: the next step's report copy may be queued before this one is read.
    pending.report = torch::empty({kReportSize}, torch::TensorOptions().dtype(torch::kFloat).pinned_memory(true));
    pending.report.copy_(scalars.report, /*non_blocking=*/true);
    pending.done.record(c10::cuda::getCurrentCUDAStream(device.index()));
    ++stepsInFlight;
  }

  TrainStepResult finishOnDevice(PendingStepImpl& pending) {
    --stepsInFlight;  // first: a failed wait below must not leave the step counted as in flight
    pending.done.synchronize();
    auto result = parseReport(pending.report.data_ptr<float>(), pending.endedWindow);
    const bool nonFinite = !std::isfinite(result.loss) && config.precision != "fp16";
    if (nonFinite || !haltedBy.empty()) {
      const bool first = haltedBy.empty();
      if (first) haltedBy = nonFiniteLoss(result.loss).what();
      if (stepsInFlight == 0) {
        // Nothing else is queued behind it: drop the window (the device skipped its update).
        // `halted` stays set on the device until importState clears it.
        torch::NoGradGuard noGrad;
        zeroGradients();
        scalars.skipWindow.zero_();
        microStep = 0;
      }
      throw first ? EngineFailure("ERR_ENGINE_NONFINITE", haltedBy) : refusedAfterHalt();
    }
    checkLossScale();
    return result;
  }
#endif

  BenchmarkResult benchmarkSteps(const HostBatch& batch, int64_t steps) {
    if (!haltedBy.empty()) throw refusedAfterHalt();
    BenchmarkResult result;
    result.steps = steps;
    using Clock = std::chrono::steady_clock;
#if ENGINE_DEVICE_STEP
    if (deviceStep) {
      if (microStep == 0) setBackboneFrozen(batch.freezeBackbone);
      setTrainingMode();
      scalars.lrHead.fill_(batch.lr);
      scalars.lrBackbone.fill_(batch.backboneLr);
      if (config.cudaGraph) ensureGraphs(batch);
      const auto onDevice = batchOnDevice(batch);
      if (config.cudaGraph) loadGraphInputs(onDevice);
      auto lossSum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat).device(device));
      const auto started = Clock::now();
      for (int64_t i = 0; i < steps; ++i) {
        const bool endsWindow = microStep + 1 == config.accumulateSteps;
        if (config.cudaGraph) {
          (endsWindow ? graphed->last : graphed->micro)->replay();
        } else {
          forwardBackwardOnDevice(onDevice.images, onDevice.labels, onDevice.headInputs);
          if (endsWindow) optimizerOnDevice(1.0);
        }
        microStep = endsWindow ? 0 : microStep + 1;
        lossSum.add_(scalars.report.select(0, kLoss));
      }
      const auto stepsBefore = head.steps;
      // Waits for the last step and refreshes the host mirrors (the step counts and scale in the
      // report are those of the last window that ended, which is what they should be).
      readReport(/*endedWindow=*/true);
      result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
      result.meanLoss = lossSum.item<double>() / static_cast<double>(steps);
      result.optimizerSteps = head.steps - stepsBefore;
      checkLossScale();
      return result;
    }
#endif
    const auto stepsBefore = head.steps;
    const auto started = Clock::now();
    double lossSum = 0;
    for (int64_t i = 0; i < steps; ++i) lossSum += trainStep(batch).loss;
    result.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    result.meanLoss = lossSum / static_cast<double>(steps);
    result.optimizerSteps = head.steps - stepsBefore;
    return result;
  }

  EngineFailure nonFiniteLoss(double loss) const {
    std::ostringstream msg;
    msg << "training loss is " << loss << " after " << head.steps
        << " optimizer steps; this batch was not applied and the weights are unchanged. "
           "Lower the learning rate (--lr) or check the input images"
        << (config.precision == "fp32" ? "" : ", or train in fp32 (--precision fp32)");
    return EngineFailure("ERR_ENGINE_NONFINITE", msg.str());
  }

  // Whether every floating-point buffer (the BatchNorm running statistics) is finite, with one
  // read-back for all of them.
  bool buffersFinite() const {
    torch::NoGradGuard noGrad;
    std::vector<torch::Tensor> flags;
    for (const auto& item : model->named_buffers())
      if (item.value().is_floating_point()) flags.push_back(torch::isfinite(item.value()).all());
    return flags.empty() || torch::stack(flags).all().item<bool>();
  }

  // Why this model cannot score or be saved, in words that end with the way back; empty when
  // it can. A non-finite batch's update is skipped, but its forward pass has already moved the
  // BatchNorm running statistics: scoring with non-finite ones gives NaN, and saving them a
  // checkpoint that does. After a halt the buffers are looked at once (nothing changes them
  // until importState); `always` looks without a halt too, as fp16 skips such a batch without
  // halting (saving is rare enough to look every time). `use` says what was asked.
  std::string corruptedStatistics(const char* use, bool always = false) {
    bool finite = true;
    if (!haltedBy.empty()) {
      if (haltedStatistics == HaltedStatistics::unchecked)
        haltedStatistics = buffersFinite() ? HaltedStatistics::finite : HaltedStatistics::corrupt;
      finite = haltedStatistics == HaltedStatistics::finite;
    } else if (always) {
      finite = buffersFinite();
    }
    if (finite) return "";
    const std::string cause =
        haltedBy.empty()
            ? std::string("the model holds non-finite BatchNorm statistics (as a batch with a non-finite loss leaves them, in fp16 too)")
            : "the batch that stopped training (" + haltedBy + ") left non-finite BatchNorm statistics in the model";
    return cause + ", so it cannot " + use +
           ": score a checkpoint saved before it, or train on from one with a lower learning rate "
           "(Trainer.load(checkpoint, { lr }), or a new run: train --resume keeps the run's lr)";
  }

  void refuseCorruptedStatistics(const char* use) {
    const auto why = corruptedStatistics(use);
    if (!why.empty()) throw EngineFailure("ERR_ENGINE_NONFINITE", why);
  }

  // GradScaler would keep halving; a scale below 1 means even unscaled gradients overflow:
  // training has diverged, and skipping every step from here on would hide it.
  void checkLossScale() const {
    if (config.precision == "fp16" && lossScale < 1) {
      throw EngineFailure("ERR_ENGINE_NONFINITE",
                          "fp16 gradients overflow at every step (the loss scale fell below 1): "
                          "training diverged. Lower the learning rate (--lr) or use "
                          "--precision bf16");
    }
  }

  TrainStepResult trainStep(const HostBatch& batch) {
    auto pending = launchTrainStep(batch);
    return finishTrainStep(*pending);
  }

  EngineFailure refusedAfterHalt() const {
    return EngineFailure("ERR_ENGINE_NONFINITE",
                         "this batch was not applied: training stopped at an earlier batch (" +
                             haltedBy + "); import a checkpoint (importState) to train on");
  }

  // On CUDA the step is queued and this returns before the device runs it, so the host can stage
  // the next batch meanwhile; finishTrainStep reads the result. On CPU the step is done here.
  std::unique_ptr<PendingStepImpl> launchTrainStep(const HostBatch& batch) {
    if (!haltedBy.empty()) throw refusedAfterHalt();
    // Freezing changes only between accumulation windows, so a window is never half frozen.
    if (microStep == 0) setBackboneFrozen(batch.freezeBackbone);
    setTrainingMode();
    auto pending = std::make_unique<PendingStepImpl>();
#if ENGINE_DEVICE_STEP
    if (deviceStep) {
      launchOnDevice(batch, *pending);
      return pending;
    }
#endif
    pending->hostResult = trainStepOnHost(batch);
    return pending;
  }

  TrainStepResult finishTrainStep(PendingStepImpl& pending) {
#if ENGINE_DEVICE_STEP
    if (pending.onDevice) return finishOnDevice(pending);
#endif
    return pending.hostResult;
  }

  TrainStepResult trainStepOnHost(const HostBatch& batch) {
    const auto x = inputTensor(batch, /*augmented=*/true);
    const auto y = labelTensor(batch);
    const auto headInputs = headInputsTensor(batch);
    torch::Tensor logits;
    {
      AutocastScope scope(autocast, autocastDtype);
      logits = model->forward(x, headInputs);
    }
    const auto lossTensor = loss(logits, y, at::Reduction::Mean);
    TrainStepResult result;
    result.loss = lossTensor.item<double>();
    if (!std::isfinite(result.loss) && config.precision != "fp16") {
      // Nothing of this window is applied: the weights stay as they were before it.
      zeroGradients();
      microStep = 0;
      haltedBy = nonFiniteLoss(result.loss).what();
      throw EngineFailure("ERR_ENGINE_NONFINITE", haltedBy);
    }
    (lossTensor * (lossScale / config.accumulateSteps)).backward();
    if (++microStep == config.accumulateSteps) applyOptimizer(batch, result);
    result.step = head.steps;
    result.lossScale = lossScale;
    return result;
  }

  // Ends the accumulation window: the optimizer step of the micro-batches since the last one.
  void applyOptimizer(const HostBatch& rates, TrainStepResult& result) {
    torch::NoGradGuard noGrad;
    auto headGrads = gradients(head);
    auto backboneGrads = backboneFrozen ? std::vector<torch::Tensor>() : gradients(backbone);
    auto allGrads = headGrads;
    allGrads.insert(allGrads.end(), backboneGrads.begin(), backboneGrads.end());
    // A window cut short holds the sum of fewer micro-batch gradients: make it their mean.
    if (microStep != config.accumulateSteps) {
      at::_foreach_mul_(allGrads, static_cast<double>(config.accumulateSteps) / microStep);
    }
    microStep = 0;
    if (unscaleGradients(allGrads)) {
      adamStep(head, headGrads, rates.lr);
      if (!backboneFrozen) adamStep(backbone, backboneGrads, rates.backboneLr);
      result.optimizerStepped = true;
    } else {
      result.overflowSkipped = true;
    }
    zeroGradients();
  }

  // Applies an unfinished accumulation window (the end of an epoch), so that no gradients are
  // pending when a checkpoint is written and a resumed run steps exactly as an uninterrupted one.
  TrainStepResult flushAccumulation(const HostBatch& rates) {
#if ENGINE_DEVICE_STEP
    if (deviceStep) {
      if (microStep == 0) {  // nothing pending
        TrainStepResult result;
        result.step = head.steps;
        result.lossScale = lossScale;
        return result;
      }
      scalars.lrHead.fill_(rates.lr);
      scalars.lrBackbone.fill_(rates.backboneLr);
      optimizerOnDevice(static_cast<double>(config.accumulateSteps) / microStep);
      microStep = 0;
      auto result = readReport(/*endedWindow=*/true);
      result.loss = 0;
      checkLossScale();
      return result;
    }
#endif
    TrainStepResult result;
    if (microStep > 0) applyOptimizer(rates, result);
    result.step = head.steps;
    result.lossScale = lossScale;
    return result;
  }

  EvaluateResult evaluate(const HostBatch& batch) {
    refuseCorruptedStatistics("score images");
    torch::NoGradGuard noGrad;
    model->eval();
    const auto x = inputTensor(batch, /*augmented=*/false);
    const auto headInputs = headInputsTensor(batch);
    torch::Tensor logits, embeddings;
    {
      AutocastScope scope(autocast, autocastDtype);
      embeddings = model->embed(x);
      logits = model->classify(embeddings, headInputs);
    }
    EvaluateResult result = scored(logits, batch);
    if (batch.wantEmbeddings) {
      const auto host = embeddings.to(torch::kFloat).to(torch::kCPU).contiguous();
      result.embeddingSize = host.size(1);
      result.embeddings.assign(host.data_ptr<float>(), host.data_ptr<float>() + host.numel());
    }
    return result;
  }

  // The head alone, on pooled features that evaluate returned (batch.embeddings): evaluate in
  // two halves, so that the head can see more images at once than one backbone batch holds.
  // Under autocast the features arrive as fp32 copies of what the backbone gave; the head's
  // layers cast them as they would have, so the logits are evaluate's.
  EvaluateResult classifyEmbeddings(const HostBatch& batch) {
    refuseCorruptedStatistics("score images");
    torch::NoGradGuard noGrad;
    model->eval();
    const auto embeddings = embeddingsTensor(batch);
    const auto headInputs = headInputsTensor(batch);
    torch::Tensor logits;
    {
      AutocastScope scope(autocast, autocastDtype);
      logits = model->classify(embeddings, headInputs);
    }
    return scored(logits, batch);
  }

  // batch.embeddings as a float [N, embeddingSize] tensor on the device owning its memory, its
  // size checked.
  torch::Tensor embeddingsTensor(const HostBatch& batch) const {
    const int64_t size = config.model.headChannels;
    if (static_cast<int64_t>(batch.embeddings.size()) != batch.batchSize * size) {
      std::ostringstream msg;
      msg << "this model's embeddings have " << size << " values per image (a Float32Array of "
          << batch.batchSize * size << " for " << batch.batchSize << " images) but '"
          << batch.fieldPrefix << "embeddings' has " << batch.embeddings.size()
          << ": give what evaluate returned with embeddings: true";
      throw EngineFailure("ERR_ENGINE_STATE", msg.str());
    }
    const auto host = torch::from_blob(const_cast<float*>(batch.embeddings.data()),
                                       {batch.batchSize, size}, torch::kFloat);
    // One copy either way: to another device, or off the batch's memory on the CPU.
    return device.is_cpu() ? host.clone() : host.to(device);
  }

  // An evaluation's logits on the host, and its summed loss when the batch has labels.
  EvaluateResult scored(torch::Tensor logits, const HostBatch& batch) const {
    logits = logits.to(torch::kFloat);
    EvaluateResult result;
    if (!batch.labels.empty()) {
      result.hasLoss = true;
      result.lossSum = loss(logits, labelTensor(batch), at::Reduction::Sum).item<double>();
    }
    const auto cpu = logits.to(torch::kCPU).contiguous();
    result.logits.assign(cpu.data_ptr<float>(), cpu.data_ptr<float>() + cpu.numel());
    return result;
  }

  // In fp32 and eval mode. The backbone runs without autograd (no activations kept, and it works
  // with a frozen backbone); only the head is differentiated, from the feature map, which gives
  // the same gradient. The parameters' gradients are not touched.
  GradCamResult gradCam(const HostBatch& batch) {
    refuseCorruptedStatistics("explain images");
    model->eval();
    const auto x = inputTensor(batch, /*augmented=*/false).to(torch::kFloat);
    auto headInputs = headInputsTensor(batch);
    // Each logit's gradient then reaches its own image's features only, as one backward of the
    // sum needs; the logits are those of scoring (the other images still give the context).
    headInputs.isolateContext = true;
    // The patients' other images (context), checked before the backbone pass is spent.
    torch::Tensor otherPooled;
    HeadInputs otherInputs;
    if (batch.context) {
      const auto& others = *batch.context;
      if (config.model.contextDim == 0) {
        throw EngineFailure("ERR_ENGINE_STATE",
                            "this model has no patient context: give Grad-CAM no 'context'");
      }
      if (batch.groups.empty()) {
        throw EngineFailure("ERR_ENGINE_STATE",
                            "Grad-CAM with a 'context' needs 'groups' for the batch too, numbered "
                            "as the context's");
      }
      otherPooled = embeddingsTensor(others);
      otherInputs = headInputsTensor(others);
    }
    torch::Tensor features;
    {
      torch::NoGradGuard noGrad;
      features = model->forwardFeatures(x);
    }
    features.requires_grad_(true);
    torch::AutoGradMode enableGrad(true);
    auto pooled = features.mean({2, 3});
    if (batch.context) {
      // The patients' other images join the head's input after the batch, as constants.
      pooled = torch::cat({pooled, otherPooled});
      headInputs.groups = torch::cat({headInputs.groups, otherInputs.groups});
      if (headInputs.metadata.defined()) {
        headInputs.metadata = torch::cat({headInputs.metadata, otherInputs.metadata});
      }
    }
    const auto logits = model->classify(pooled, headInputs).slice(0, 0, batch.batchSize);
    const auto gradient = torch::autograd::grad({logits.sum()}, {features})[0];
    const auto maps = (gradient.mean({2, 3}, /*keepdim=*/true) * features).sum(1).detach().to(torch::kCPU).contiguous();
    const auto hostLogits = logits.detach().to(torch::kCPU).contiguous();
    GradCamResult result;
    result.height = maps.size(1);
    result.width = maps.size(2);
    result.maps.assign(maps.data_ptr<float>(), maps.data_ptr<float>() + maps.numel());
    result.logits.assign(hostLogits.data_ptr<float>(), hostLogits.data_ptr<float>() + hostLogits.numel());
    return result;
  }

  std::map<std::string, torch::Tensor> modelTensors() const {
    std::map<std::string, torch::Tensor> tensors;
    for (const auto& item : model->named_parameters()) tensors[item.key()] = item.value();
    for (const auto& item : model->named_buffers()) tensors[item.key()] = item.value();
    return tensors;
  }

  EngineState exportState() {
    EngineState state;
    // Exported all the same (to look into): the Trainer refuses to save it.
    state.unsaveable = corruptedStatistics("be saved", /*always=*/true);
    for (const auto& [name, tensor] : modelTensors()) state.model.push_back(toHost(name, tensor));
    for (size_t i = 0; i < parameters.size(); ++i) {
      state.optimizer.push_back(toHost("exp_avg." + parameterNames[i], expAvg[i]));
      state.optimizer.push_back(toHost("exp_avg_sq." + parameterNames[i], expAvgSq[i]));
    }
    state.hasOptimizer = true;
    state.step = head.steps;
    state.backboneStep = backbone.steps;
    state.lossScale = lossScale;
    state.hasScalars = true;
    torch::Tensor rng;
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      rng = generator.get_state();
    }
    state.rngState.assign(rng.data_ptr<uint8_t>(), rng.data_ptr<uint8_t>() + rng.numel());
    return state;
  }

  // Everything is checked before anything is copied, so a failed import leaves the engine as it
  // was.
  void importState(const EngineState& state, bool strict) {
    auto targets = modelTensors();
    std::vector<std::string> unexpected, mismatched, missing;
    std::set<std::string> mismatchedNames;  // reported as mismatched, so not also as missing
    std::map<std::string, torch::Tensor> incoming;
    for (const auto& host : state.model) {
      const auto found = targets.find(host.name);
      if (found == targets.end()) {
        unexpected.push_back(host.name);
        continue;
      }
      auto tensor = fromHost(host);
      if (tensor.sizes() != found->second.sizes()) {
        mismatched.push_back(host.name + " (model " + shapeText(found->second.sizes()) +
                             ", given " + shapeText(tensor.sizes()) + ")");
        mismatchedNames.insert(host.name);
        continue;
      }
      incoming[host.name] = tensor;
    }
    for (const auto& [name, tensor] : targets) {
      if (!incoming.count(name) && !mismatchedNames.count(name)) {
        if (strict) missing.push_back(name);
      }
    }
    if (!unexpected.empty() || !mismatched.empty() || !missing.empty()) {
      std::string msg = "the weights do not fit this model:";
      if (!missing.empty()) msg += " missing tensors: " + listText(missing) + ";";
      if (!unexpected.empty()) msg += " unexpected tensors: " + listText(unexpected) + ";";
      if (!mismatched.empty()) msg += " shape mismatch: " + listText(mismatched) + ";";
      msg += " check that the checkpoint was made for the same --model and head settings";
      throw EngineFailure("ERR_ENGINE_STATE", msg);
    }

    std::vector<torch::Tensor> newExpAvg, newExpAvgSq;
    if (state.hasOptimizer) {
      std::map<std::string, const HostTensor*> byName;
      for (const auto& host : state.optimizer) byName[host.name] = &host;
      const auto moment = [&](const std::string& prefix, size_t i) {
        const auto name = prefix + parameterNames[i];
        const auto found = byName.find(name);
        if (found == byName.end()) {
          throw EngineFailure("ERR_ENGINE_STATE", "optimizer state has no tensor '" + name + "'");
        }
        auto tensor = fromHost(*found->second);
        if (tensor.sizes() != parameters[i].sizes()) {
          throw EngineFailure("ERR_ENGINE_STATE",
                              "optimizer tensor '" + name + "' has shape " + shapeText(tensor.sizes()));
        }
        return tensor;
      };
      for (size_t i = 0; i < parameters.size(); ++i) {
        newExpAvg.push_back(moment("exp_avg.", i));
        newExpAvgSq.push_back(moment("exp_avg_sq.", i));
      }
    }

    torch::NoGradGuard noGrad;
    for (const auto& [name, tensor] : incoming) targets[name].copy_(tensor);
    if (state.hasOptimizer) {
      for (size_t i = 0; i < parameters.size(); ++i) {
        expAvg[i].copy_(newExpAvg[i]);
        expAvgSq[i].copy_(newExpAvgSq[i]);
      }
    }
    if (state.hasScalars) {
      head.steps = state.step;
      backbone.steps = state.backboneStep;
      // Only fp16 scales its loss; a scale saved by an fp16 run means nothing to other precisions.
      if (config.precision == "fp16") lossScale = state.lossScale >= 1 ? state.lossScale : kInitialLossScale;
    }
    if (!state.rngState.empty()) {
      std::lock_guard<std::mutex> lock(generator.mutex());
      // A state saved on another device type (CPU vs CUDA) has another size: this engine then
      // keeps its own seeded stream.
      if (static_cast<size_t>(generator.get_state().numel()) == state.rngState.size()) {
        auto rng = torch::empty({static_cast<int64_t>(state.rngState.size())}, torch::kUInt8);
        std::memcpy(rng.data_ptr(), state.rngState.data(), state.rngState.size());
        generator.set_state(rng);
      }
    }
    microStep = 0;
    zeroGradients();
    haltedBy.clear();
    haltedStatistics = HaltedStatistics::unchecked;
#if ENGINE_DEVICE_STEP
    if (deviceStep) pushScalarsToDevice();
#endif
  }

  MemoryStats memoryStats(bool resetPeak) const {
    MemoryStats stats;
#ifdef ENGINE_WITH_CUDA
    if (device.is_cuda()) {
      namespace allocator = c10::cuda::CUDACachingAllocator;
      const auto deviceStats = allocator::getDeviceStats(device.index());
      constexpr size_t kAggregate = 0;  // StatType::AGGREGATE: all pools together
      stats.available = true;
      stats.allocatedBytes = deviceStats.allocated_bytes[kAggregate].current;
      stats.peakAllocatedBytes = deviceStats.allocated_bytes[kAggregate].peak;
      stats.reservedBytes = deviceStats.reserved_bytes[kAggregate].current;
      if (resetPeak) allocator::resetPeakStats(device.index());
    }
#endif
    return stats;
  }
};

Engine::Engine(const EngineConfig& config) : impl_(std::make_unique<Impl>(config)) {}
Engine::~Engine() = default;

TrainStepResult Engine::trainStep(const HostBatch& batch) { return impl_->trainStep(batch); }
std::unique_ptr<PendingStep> Engine::launchTrainStep(const HostBatch& batch) {
  return impl_->launchTrainStep(batch);
}
TrainStepResult Engine::finishTrainStep(PendingStep& pending) {
  return impl_->finishTrainStep(static_cast<PendingStepImpl&>(pending));
}
BenchmarkResult Engine::benchmarkSteps(const HostBatch& batch, int64_t steps) {
  return impl_->benchmarkSteps(batch, steps);
}
EvaluateResult Engine::evaluate(const HostBatch& batch) { return impl_->evaluate(batch); }
EvaluateResult Engine::classifyEmbeddings(const HostBatch& batch) {
  return impl_->classifyEmbeddings(batch);
}
TrainStepResult Engine::flushAccumulation(const HostBatch& rates) {
  return impl_->flushAccumulation(rates);
}
std::vector<uint8_t> Engine::previewAugment(const HostBatch& batch) {
  return impl_->previewAugment(batch);
}
GradCamResult Engine::gradCam(const HostBatch& batch) { return impl_->gradCam(batch); }
EngineState Engine::exportState() { return impl_->exportState(); }
MemoryStats Engine::memoryStats(bool resetPeak) { return impl_->memoryStats(resetPeak); }
void Engine::importState(const EngineState& state, bool strict) {
  impl_->importState(state, strict);
}

EngineInfo Engine::info() const {
  EngineInfo info;
  for (const auto& p : impl_->parameters) info.parameterCount += p.numel();
  info.device = impl_->device.str();
  info.precision = impl_->config.precision;
  info.stepMode = "host";
#if ENGINE_DEVICE_STEP
  if (impl_->deviceStep) info.stepMode = impl_->config.cudaGraph ? "graph" : "device";
#endif
#ifdef ENGINE_WITH_NVJPEG
  if (impl_->jpegDecoder) info.jpegBackend = impl_->jpegDecoder->backend();
#endif
  info.parameterNames = impl_->parameterNames;
  info.headTensorPrefixes = kHeadTensorPrefixes;
  return info;
}

TorchInfo torchInfo() {
  TorchInfo info;
  info.torchVersion = TORCH_VERSION;
  info.cudaAvailable = torch::cuda::is_available();
  info.cudaDeviceCount = static_cast<int64_t>(torch::cuda::device_count());
  info.cudnnAvailable = torch::cuda::cudnn_is_available();
#ifdef ENGINE_WITH_CUDA
  info.compiledWithCuda = true;
#endif
  info.cudaGraphs = ENGINE_DEVICE_STEP == 1;
#ifdef ENGINE_WITH_NVJPEG
  info.nvjpeg = true;
#endif
  return info;
}

void rethrowAsEngineFailure() {
  try {
    throw;
  } catch (const EngineFailure&) {
    throw;
  } catch (const c10::Error& e) {
    std::string message = e.what_without_backtrace();
    if (isOutOfMemory(message)) {
      throw EngineFailure("ERR_ENGINE_OOM",
                          message + " (lower --batch-size or --image-size, or use --accumulate "
                                    "to keep the effective batch)");
    }
    throw EngineFailure("ERR_ENGINE_TORCH", message);
  } catch (const std::bad_alloc&) {
    throw EngineFailure("ERR_ENGINE_OOM",
                        "out of host memory (lower --batch-size or --image-size)");
  } catch (const std::exception& e) {
    throw EngineFailure("ERR_ENGINE_STD", e.what());
  } catch (...) {
    throw EngineFailure("ERR_ENGINE_STD", "unknown native exception");
  }
}

}  // namespace engine
