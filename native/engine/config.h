// Plain C++ structs that cross the boundary between the N-API layer (addon.cc, no LibTorch) and
// the engine (engine.cc, LibTorch). Keeping them free of torch types lets addon.cc compile in
// seconds and keeps V8 objects out of the engine thread.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace engine {

// One EfficientNet stage after width/depth scaling (TypeScript did the scaling).
struct StageSpec {
  int repeats = 1;
  int kernel = 3;
  int stride = 1;
  double expandRatio = 1;
  int outChannels = 16;
};

struct ModelSpec {
  int stemChannels = 32;
  std::vector<StageSpec> stages;
  int headChannels = 1280;
  double seRatio = 0.25;
  double dropPathRate = 0.2;
  int headHidden = 0;
  double headDropout = 0.2;
  // Patient metadata fused with the image features: a 2-layer MLP of metadataHidden units over
  // metadataFeatures inputs, concatenated with the pooled features (0 = images only).
  int metadataFeatures = 0;
  int metadataHidden = 0;
  // Patient context: each image attends over the other images of its patient in the batch
  // (query/key/value projections of contextDim units over the pooled features); the attended
  // context and a "has other lesions" flag join the classifier's input (0 = each image alone).
  int contextDim = 0;
  double bnEps = 1e-5;
  double bnMomentum = 0.1;
  bool samePadding = false;  // TensorFlow "SAME" padding (lukemelas / timm tf_* weights)
};

// Train-time augmentation: a probability per transform and its magnitude (see src/native.ts).
struct AugmentSpec {
  double flip = 0, transpose = 0;
  double affine = 0, rotateDegrees = 0, shift = 0, scale = 0;
  double brightness = 0, brightnessMagnitude = 0;
  double contrast = 0, contrastMagnitude = 0;
  double saturation = 0, saturationMagnitude = 0;
  double hue = 0, hueMagnitude = 0;
  double cutout = 0, cutoutSize = 0;

  bool any() const {
    return flip > 0 || transpose > 0 || affine > 0 || brightness > 0 || contrast > 0 ||
           saturation > 0 || hue > 0 || cutout > 0;
  }
};

struct EngineConfig {
  ModelSpec model;
  std::string device = "cpu";      // "cpu" | "cuda"
  std::string precision = "fp32";  // "fp32" | "bf16" | "fp16"
  uint64_t seed = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0;
  double posWeight = 1;
  double labelSmoothing = 0;
  int accumulateSteps = 1;
  bool freezeBatchNorm = false;
  bool channelsLast = false;
  // CUDA: capture the whole training step (forward, backward, loss scaling, optimizer) once per
  // batch shape and replay it (see engine.cc, "The device-resident training step").
  bool cudaGraph = false;
  // Make the GPU JPEG decoder with the engine (training with --decode nvjpeg), so that a machine
  // without it fails at once and info() names its backend; JPEG batches make one anyway.
  bool nvjpeg = false;
  AugmentSpec augment;
};

// uint8 RGB HWC images, row-major (or the JPEGs to decode on the device), plus optional labels.
struct HostBatch {
  std::vector<uint8_t> images;
  int64_t batchSize = 0, height = 0, width = 0;
  // Instead of `images` (then empty): the batch's JPEG files end to end, image i being bytes
  // [jpegOffsets[i], jpegOffsets[i + 1]), decoded on the device by nvJPEG and resized to
  // height x width (see jpeg_decoder.h). CUDA engines built with nvJPEG only.
  std::vector<uint8_t> jpegs;
  std::vector<int64_t> jpegOffsets;  // batchSize + 1 entries when jpegs is used
  bool coverFit = false;             // non-square JPEGs: crop the centre ('cover'), not stretch
  bool hasJpegs() const { return !jpegOffsets.empty(); }
  std::vector<float> labels;  // empty when the caller gave none
  std::vector<float> metadata;  // batchSize x metadataFeatures, row-major; empty without
  // Patient of each image as a small integer (equal = same patient), for a model with patient
  // context; empty = every image its own patient (no context).
  std::vector<int32_t> groups;
  double lr = 0;              // of the head (classifier, head_fc)
  double backboneLr = 0;
  bool freezeBackbone = false;
  bool wantEmbeddings = false;  // evaluate: also return each image's pooled features
  // classifyEmbeddings, instead of images: batchSize x embeddingSize pooled features, row-major.
  std::vector<float> embeddings;
  // gradCam with patient context: the other images of the batch's patients, as pooled features
  // (`embeddings`, from evaluate) with their `groups` (numbered as this batch's) and `metadata`.
  // The head sees them beside the batch, as constants, so an image is explained beside every
  // other image of its patient, however many; they get no maps.
  std::shared_ptr<const HostBatch> context;
  // How refusals name this batch's fields: "" for a batch, "context." for Grad-CAM's context.
  std::string fieldPrefix;
};

struct TrainStepResult {
  double loss = 0;
  bool optimizerStepped = false;
  int64_t step = 0;
  bool overflowSkipped = false;
  double lossScale = 1;
};

// Train steps repeated on one batch staged once on the device (data already there, as the
// Python baseline has it), with no per-step read-back: the model-side throughput ceiling.
struct BenchmarkResult {
  int64_t steps = 0;
  double seconds = 0;  // engine-thread wall time of the steps, up to their completion
  double meanLoss = 0;
  int64_t optimizerSteps = 0;
};

struct EvaluateResult {
  std::vector<float> logits;
  bool hasLoss = false;
  double lossSum = 0;
  // With wantEmbeddings: batchSize x embeddingSize, row-major (the pooled image features the
  // classifier reads, before any metadata is fused).
  std::vector<float> embeddings;
  int64_t embeddingSize = 0;
};

// Grad-CAM of the melanoma logit at the last feature map: for each image, sum over channels c
// of alpha_c * A_c(i, j), where alpha_c is the spatial mean of d logit / d A_c. Raw (no ReLU, no
// scaling): for a head that is pooling + Linear, a map sums to logit - bias.
struct GradCamResult {
  std::vector<float> maps;  // batchSize x height x width, row-major
  int64_t height = 0, width = 0;
  std::vector<float> logits;
};

// A tensor as little-endian contiguous bytes; dtype uses safetensors' names (F32, I64 ...).
struct HostTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

struct EngineState {
  std::vector<HostTensor> model;
  std::vector<HostTensor> optimizer;
  bool hasOptimizer = false;
  int64_t step = 0;          // optimizer steps (of the head)
  int64_t backboneStep = 0;  // Adam steps of the backbone (fewer when it was frozen)
  double lossScale = 1;
  bool hasScalars = false;
  std::vector<uint8_t> rngState;
  // Export only: why this state must not become a checkpoint (non-finite statistics), or empty.
  std::string unsaveable;
};

struct EngineInfo {
  int64_t parameterCount = 0;
  std::string device;
  std::string precision;
  // "host": per-step host scalars and multi-tensor Adam; "device": device-resident scalars and
  // fused AdamW, no host sync but the loss read-back; "graph": that step replayed as a CUDA graph.
  std::string stepMode;
  // The nvJPEG backend that decoded this engine's JPEG batches: "hardware" (the GPU's JPEG
  // engines) or "cuda"; empty before the first JPEG batch.
  std::string jpegBackend;
  std::vector<std::string> parameterNames;
  std::vector<std::string> headTensorPrefixes;  // see kHeadTensorPrefixes (efficientnet.h)
};

// Device memory of the engine's device, from LibTorch's caching allocator (CUDA only).
struct MemoryStats {
  bool available = false;  // false on CPU
  int64_t allocatedBytes = 0, peakAllocatedBytes = 0, reservedBytes = 0;
};

struct TorchInfo {
  std::string torchVersion;
  bool cudaAvailable = false;
  int64_t cudaDeviceCount = 0;
  bool cudnnAvailable = false;
  bool compiledWithCuda = false;
  // The sync-free CUDA training step and its CUDA graphs are compiled in (CUDA LibTorch >= 2.4).
  bool cudaGraphs = false;
  // JPEG batches can be decoded on the GPU (built with the CUDA toolkit's nvJPEG).
  bool nvjpeg = false;
};

// An error with a stable code that the N-API layer turns into `err.code` (see src/native.ts).
struct EngineFailure : std::runtime_error {
  std::string code;
  EngineFailure(std::string code_, const std::string& message)
      : std::runtime_error(message), code(std::move(code_)) {}
};

}  // namespace engine
