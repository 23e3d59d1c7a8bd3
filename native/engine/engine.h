// The training engine: one EfficientNet, its optimizer state and its device. Not thread-safe by
// design: every method runs on the engine's own worker thread (see worker.h), where torch's
// thread-local state (grad mode, autocast, CUDA stream) stays put.
#pragma once

#include <memory>
#include <vector>

#include "config.h"

namespace engine {

// A train step queued on the device whose result has not been read yet (Engine::launchTrainStep).
class PendingStep {
 public:
  virtual ~PendingStep() = default;
  // Whether finishTrainStep would return without waiting for the device.
  virtual bool ready() const = 0;
};

class Engine {
 public:
  explicit Engine(const EngineConfig& config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  TrainStepResult trainStep(const HostBatch& batch);  // launch + finish
  // Queues a train step and returns before the device has run it (CUDA; on CPU the step is done on
  // return), so the caller can stage the next batch meanwhile. Each pending step must be finished,
  // in launch order, before any method other than launchTrainStep is called. After a step whose
  // loss was not finite (fp32/bf16), every train step is refused, and changes nothing, until a
  // checkpoint is imported: steps already launched on the device behind it included.
  std::unique_ptr<PendingStep> launchTrainStep(const HostBatch& batch);
  TrainStepResult finishTrainStep(PendingStep& pending);
  BenchmarkResult benchmarkSteps(const HostBatch& batch, int64_t steps);
  // Steps the optimizer on an unfinished accumulation window (uses batch.lr/backboneLr only).
  TrainStepResult flushAccumulation(const HostBatch& rates);
  EvaluateResult evaluate(const HostBatch& batch);
  // The head on pooled features from evaluate (batch.embeddings instead of images): the logits
  // evaluate gives, for any number of images at once (patient context over whole patients).
  EvaluateResult classifyEmbeddings(const HostBatch& batch);
  // The batch after train-time augmentation, as uint8 NHWC (draws from the engine's generator).
  std::vector<uint8_t> previewAugment(const HostBatch& batch);
  // Grad-CAM maps of the batch's melanoma logits (see GradCamResult), eval mode, fp32.
  GradCamResult gradCam(const HostBatch& batch);
  EngineState exportState();
  void importState(const EngineState& state, bool strict);
  EngineInfo info() const;
  MemoryStats memoryStats(bool resetPeak);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

TorchInfo torchInfo();

// Runs `fn`, turning c10::Error and other exceptions into EngineFailure with a stable code and a
// message without C++ backtraces.
template <typename Fn>
auto translateErrors(Fn&& fn) -> decltype(fn());
void rethrowAsEngineFailure();

template <typename Fn>
auto translateErrors(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (...) {
    rethrowAsEngineFailure();
    throw;  // unreachable: rethrowAsEngineFailure always throws
  }
}

}  // namespace engine
