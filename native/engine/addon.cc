// N-API surface of the engine addon. This file never includes LibTorch: it converts JS values to
// the plain structs of config.h on the JS thread, queues the work on the engine's own thread, and
// settles a Promise back on the JS thread. The typed JS side is src/native.ts.
#include <napi.h>

#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <type_traits>

#include "config.h"
#include "engine.h"
#include "worker.h"

namespace {

using engine::EngineFailure;

// ---- JS -> C++ (the TS side validated user input; these only guard the contract) ----------

Napi::Value field(const Napi::Object& object, const char* key) {
  auto value = object.Get(key);
  if (value.IsUndefined()) {
    throw Napi::TypeError::New(object.Env(), std::string("engine: missing field '") + key + "'");
  }
  return value;
}

double numberField(const Napi::Object& object, const char* key) {
  auto value = field(object, key);
  if (!value.IsNumber()) {
    throw Napi::TypeError::New(object.Env(),
                               std::string("engine: field '") + key + "' must be a number");
  }
  return value.As<Napi::Number>().DoubleValue();
}

int intField(const Napi::Object& object, const char* key) {
  return static_cast<int>(numberField(object, key));
}

bool boolField(const Napi::Object& object, const char* key) {
  return field(object, key).ToBoolean().Value();
}

std::string stringField(const Napi::Object& object, const char* key) {
  return field(object, key).ToString().Utf8Value();
}

engine::EngineConfig parseConfig(const Napi::Object& js) {
  engine::EngineConfig config;
  const auto model = field(js, "model").As<Napi::Object>();
  config.model.stemChannels = intField(model, "stemChannels");
  config.model.headChannels = intField(model, "headChannels");
  config.model.seRatio = numberField(model, "seRatio");
  config.model.dropPathRate = numberField(model, "dropPathRate");
  config.model.headHidden = intField(model, "headHidden");
  config.model.headDropout = numberField(model, "headDropout");
  config.model.metadataFeatures = intField(model, "metadataFeatures");
  config.model.metadataHidden = intField(model, "metadataHidden");
  config.model.contextDim = intField(model, "contextDim");
  config.model.bnEps = numberField(model, "bnEps");
  config.model.bnMomentum = numberField(model, "bnMomentum");
  config.model.samePadding = stringField(model, "padding") == "same";
  const auto stages = field(model, "stages").As<Napi::Array>();
  for (uint32_t i = 0; i < stages.Length(); ++i) {
    const auto stage = stages.Get(i).As<Napi::Object>();
    config.model.stages.push_back({intField(stage, "repeats"), intField(stage, "kernel"),
                                   intField(stage, "stride"), numberField(stage, "expandRatio"),
                                   intField(stage, "outChannels")});
  }
  config.device = stringField(js, "device");
  config.precision = stringField(js, "precision");
  config.seed = static_cast<uint64_t>(numberField(js, "seed"));
  config.beta1 = numberField(js, "beta1");
  config.beta2 = numberField(js, "beta2");
  config.eps = numberField(js, "eps");
  config.weightDecay = numberField(js, "weightDecay");
  config.posWeight = numberField(js, "posWeight");
  config.labelSmoothing = numberField(js, "labelSmoothing");
  config.accumulateSteps = intField(js, "accumulateSteps");
  config.freezeBatchNorm = boolField(js, "freezeBatchNorm");
  config.channelsLast = boolField(js, "channelsLast");
  config.cudaGraph = boolField(js, "cudaGraph");
  config.nvjpeg = js.Get("nvjpeg").ToBoolean().Value();  // optional: JPEG batches also make one on demand
  const auto augment = field(js, "augment").As<Napi::Object>();
  auto& a = config.augment;
  for (const auto& [key, target] : std::initializer_list<std::pair<const char*, double*>>{
           {"flip", &a.flip},
           {"transpose", &a.transpose},
           {"affine", &a.affine},
           {"rotateDegrees", &a.rotateDegrees},
           {"shift", &a.shift},
           {"scale", &a.scale},
           {"brightness", &a.brightness},
           {"brightnessMagnitude", &a.brightnessMagnitude},
           {"contrast", &a.contrast},
           {"contrastMagnitude", &a.contrastMagnitude},
           {"saturation", &a.saturation},
           {"saturationMagnitude", &a.saturationMagnitude},
           {"hue", &a.hue},
           {"hueMagnitude", &a.hueMagnitude},
           {"cutout", &a.cutout},
           {"cutoutSize", &a.cutoutSize}}) {
    *target = numberField(augment, key);
  }
  return config;
}

// An optional typed-array field (Float32Array for float, Int32Array for int32_t) copied into
// `out`; false when the field is absent or null.
template <typename T>
bool typedArrayField(const Napi::Object& js, const char* key, std::vector<T>& out) {
  constexpr bool isFloat = std::is_same_v<T, float>;
  static_assert(isFloat || std::is_same_v<T, int32_t>);
  const auto value = js.Get(key);
  if (value.IsUndefined() || value.IsNull()) return false;
  if (!value.IsTypedArray() ||
      value.As<Napi::TypedArray>().TypedArrayType() != (isFloat ? napi_float32_array : napi_int32_array)) {
    throw Napi::TypeError::New(js.Env(), std::string("engine: '") + key + "' must be a" +
                                             (isFloat ? " Float32Array" : "n Int32Array"));
  }
  const auto array = value.As<Napi::TypedArrayOf<T>>();
  out.assign(array.Data(), array.Data() + array.ElementLength());
  return true;
}

// The values as a new JS Float32Array (a copy: the vector belongs to the engine's result).
Napi::Float32Array toFloat32Array(Napi::Env env, const std::vector<float>& values) {
  auto array = Napi::Float32Array::New(env, values.size());
  std::memcpy(array.Data(), values.data(), values.size() * sizeof(float));
  return array;
}

// A JPEG batch: `jpegs`, an array of batchSize Buffers (one JPEG file each), instead of
// `images`; `fit` 'cover' crops non-square ones to their centre. Copied end to end, like images.
void parseJpegs(const Napi::Object& js, const Napi::Value& value, engine::HostBatch& batch) {
  const auto env = js.Env();
  if (!js.Get("images").IsUndefined()) {
    throw Napi::TypeError::New(env, "engine: a batch holds 'images' or 'jpegs', not both");
  }
  if (!value.IsArray()) throw Napi::TypeError::New(env, "engine: 'jpegs' must be an array of Buffers");
  const auto array = value.As<Napi::Array>();
  if (array.Length() != static_cast<uint32_t>(batch.batchSize)) {
    throw Napi::RangeError::New(env, "engine: 'jpegs' has " + std::to_string(array.Length()) +
                                         " Buffers for a batch of " + std::to_string(batch.batchSize));
  }
  std::vector<Napi::Buffer<uint8_t>> files;
  size_t total = 0;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const auto item = array.Get(i);
    if (!item.IsBuffer() || item.As<Napi::Buffer<uint8_t>>().Length() == 0) {
      throw Napi::TypeError::New(env, "engine: 'jpegs[" + std::to_string(i) + "]' must be a non-empty Buffer");
    }
    files.push_back(item.As<Napi::Buffer<uint8_t>>());
    total += files.back().Length();
  }
  // One allocation of the final size: growing a 30 MB vector file by file costs more than the copy.
  batch.jpegs.resize(total);
  batch.jpegOffsets.push_back(0);
  for (const auto& file : files) {
    std::memcpy(batch.jpegs.data() + batch.jpegOffsets.back(), file.Data(), file.Length());
    batch.jpegOffsets.push_back(batch.jpegOffsets.back() + static_cast<int64_t>(file.Length()));
  }
  const auto fit = js.Get("fit");
  if (!fit.IsUndefined() && !(fit.IsString() && (fit.As<Napi::String>().Utf8Value() == "fill" ||
                                                 fit.As<Napi::String>().Utf8Value() == "cover"))) {
    throw Napi::TypeError::New(env, "engine: 'fit' must be 'fill' or 'cover'");
  }
  batch.coverFit = fit.IsString() && fit.As<Napi::String>().Utf8Value() == "cover";
}

// What a batch gives the head besides images: optional labels (required for a train step),
// metadata and patient groups.
void parseHeadInputs(const Napi::Object& js, engine::HostBatch& batch, bool labelsRequired) {
  const auto env = js.Env();
  if (typedArrayField(js, "labels", batch.labels)) {
    if (batch.labels.size() != static_cast<size_t>(batch.batchSize)) {
      throw Napi::RangeError::New(env, "engine: 'labels' has " +
                                           std::to_string(batch.labels.size()) +
                                           " values for a batch of " +
                                           std::to_string(batch.batchSize));
    }
  } else if (labelsRequired) {
    throw Napi::TypeError::New(env, "engine: a train step needs 'labels'");
  }
  // Its size depends on the model: the engine checks it (hostMetadata in engine.cc).
  typedArrayField(js, "metadata", batch.metadata);
  // Patients (patient context): checked against the model by the engine (hostGroups).
  typedArrayField(js, "groups", batch.groups);
}

// classifyEmbeddings: pooled features (a Float32Array, checked against the model by the engine)
// with the head's inputs, no images.
engine::HostBatch parseEmbeddingBatch(const Napi::Object& js) {
  const auto env = js.Env();
  engine::HostBatch batch;
  batch.batchSize = intField(js, "batchSize");
  if (batch.batchSize <= 0) throw Napi::RangeError::New(env, "engine: batchSize must be positive");
  if (!typedArrayField(js, "embeddings", batch.embeddings)) {
    throw Napi::TypeError::New(env, "engine: classifyEmbeddings needs 'embeddings', a Float32Array");
  }
  parseHeadInputs(js, batch, /*labelsRequired=*/false);
  return batch;
}

// Grad-CAM's 'context': the other images of the batch's patients as {embeddings, groups,
// metadata?}, one image per entry of groups.
engine::HostBatch parseContext(const Napi::Object& js) {
  const auto env = js.Env();
  engine::HostBatch context;
  context.fieldPrefix = "context.";
  if (!typedArrayField(js, "groups", context.groups) || context.groups.empty()) {
    throw Napi::TypeError::New(env, "engine: 'context' needs 'groups', a non-empty Int32Array");
  }
  context.batchSize = static_cast<int64_t>(context.groups.size());
  if (!typedArrayField(js, "embeddings", context.embeddings)) {
    throw Napi::TypeError::New(env, "engine: 'context' needs 'embeddings', a Float32Array");
  }
  typedArrayField(js, "metadata", context.metadata);
  return context;
}

// The images are copied here, on the JS thread, so the caller may reuse its Buffer at once.
engine::HostBatch parseBatch(const Napi::Object& js, bool withLearningRate) {
  const auto env = js.Env();
  engine::HostBatch batch;
  batch.batchSize = intField(js, "batchSize");
  batch.height = intField(js, "height");
  batch.width = intField(js, "width");
  if (batch.batchSize <= 0 || batch.height <= 0 || batch.width <= 0) {
    throw Napi::RangeError::New(env, "engine: batchSize, height and width must be positive");
  }
  const auto jpegs = js.Get("jpegs");
  if (!jpegs.IsUndefined() && !jpegs.IsNull()) {
    parseJpegs(js, jpegs, batch);
  } else {
    const auto images = field(js, "images");
    if (!images.IsBuffer()) throw Napi::TypeError::New(env, "engine: 'images' must be a Buffer");
    const auto buffer = images.As<Napi::Buffer<uint8_t>>();
    const size_t expected = static_cast<size_t>(batch.batchSize) * batch.height * batch.width * 3;
    if (buffer.Length() != expected) {
      throw Napi::RangeError::New(
          env, "engine: 'images' holds " + std::to_string(buffer.Length()) +
                   " bytes but batchSize x height x width x 3 = " + std::to_string(expected));
    }
    batch.images.assign(buffer.Data(), buffer.Data() + buffer.Length());
  }
  parseHeadInputs(js, batch, /*labelsRequired=*/withLearningRate);
  batch.wantEmbeddings = js.Get("embeddings").ToBoolean().Value();
  if (withLearningRate) {
    batch.lr = numberField(js, "lr");
    batch.backboneLr = js.Get("backboneLr").IsNumber() ? numberField(js, "backboneLr") : batch.lr;
    batch.freezeBackbone = js.Get("freezeBackbone").ToBoolean().Value();
  }
  return batch;
}

std::vector<engine::HostTensor> parseTensors(const Napi::Array& array) {
  std::vector<engine::HostTensor> tensors;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    const auto js = array.Get(i).As<Napi::Object>();
    engine::HostTensor tensor;
    tensor.name = stringField(js, "name");
    tensor.dtype = stringField(js, "dtype");
    const auto shape = field(js, "shape").As<Napi::Array>();
    for (uint32_t d = 0; d < shape.Length(); ++d) {
      tensor.shape.push_back(static_cast<int64_t>(shape.Get(d).As<Napi::Number>().Int64Value()));
    }
    const auto data = field(js, "data");
    if (!data.IsBuffer()) {
      throw Napi::TypeError::New(js.Env(), "engine: tensor '" + tensor.name + "' data must be a Buffer");
    }
    const auto buffer = data.As<Napi::Buffer<uint8_t>>();
    tensor.data.assign(buffer.Data(), buffer.Data() + buffer.Length());
    tensors.push_back(std::move(tensor));
  }
  return tensors;
}

engine::EngineState parseState(const Napi::Object& js) {
  engine::EngineState state;
  state.model = parseTensors(field(js, "model").As<Napi::Array>());
  const auto optimizer = js.Get("optimizer");
  if (optimizer.IsArray()) {
    state.optimizer = parseTensors(optimizer.As<Napi::Array>());
    state.hasOptimizer = true;
  }
  if (js.Get("step").IsNumber()) {
    state.step = static_cast<int64_t>(numberField(js, "step"));
    state.backboneStep = js.Get("backboneStep").IsNumber()
                             ? static_cast<int64_t>(numberField(js, "backboneStep"))
                             : state.step;
    state.lossScale = js.Get("lossScale").IsNumber() ? numberField(js, "lossScale") : 1.0;
    state.hasScalars = true;
  }
  const auto rng = js.Get("rngState");
  if (rng.IsBuffer()) {
    const auto buffer = rng.As<Napi::Buffer<uint8_t>>();
    state.rngState.assign(buffer.Data(), buffer.Data() + buffer.Length());
  }
  return state;
}

// ---- C++ -> JS ------------------------------------------------------------------------------

// The tensors' bytes move into the Buffers (which free them when collected): a checkpoint of a
// large model is not copied once more on its way to JS.
Napi::Buffer<uint8_t> bufferOwning(Napi::Env env, std::vector<uint8_t>&& bytes) {
  if (bytes.empty()) return Napi::Buffer<uint8_t>::New(env, 0);
  auto* owned = new std::vector<uint8_t>(std::move(bytes));
  return Napi::Buffer<uint8_t>::New(
      env, owned->data(), owned->size(),
      [](Napi::Env, uint8_t*, std::vector<uint8_t>* vector) { delete vector; }, owned);
}

Napi::Array tensorsToJs(Napi::Env env, std::vector<engine::HostTensor>& tensors) {
  auto array = Napi::Array::New(env, tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    auto& tensor = tensors[i];
    auto js = Napi::Object::New(env);
    js.Set("name", tensor.name);
    js.Set("dtype", tensor.dtype);
    auto shape = Napi::Array::New(env, tensor.shape.size());
    for (size_t d = 0; d < tensor.shape.size(); ++d) {
      shape.Set(static_cast<uint32_t>(d), Napi::Number::New(env, static_cast<double>(tensor.shape[d])));
    }
    js.Set("shape", shape);
    js.Set("data", bufferOwning(env, std::move(tensor.data)));
    array.Set(static_cast<uint32_t>(i), js);
  }
  return array;
}

Napi::Object infoToJs(Napi::Env env, const engine::EngineInfo& info) {
  auto js = Napi::Object::New(env);
  js.Set("parameterCount", Napi::Number::New(env, static_cast<double>(info.parameterCount)));
  js.Set("device", info.device);
  js.Set("precision", info.precision);
  js.Set("stepMode", info.stepMode);
  js.Set("jpegBackend", info.jpegBackend.empty() ? env.Null() : Napi::String::New(env, info.jpegBackend));
  auto names = Napi::Array::New(env, info.parameterNames.size());
  for (size_t i = 0; i < info.parameterNames.size(); ++i) {
    names.Set(static_cast<uint32_t>(i), info.parameterNames[i]);
  }
  js.Set("parameterNames", names);
  auto prefixes = Napi::Array::New(env, info.headTensorPrefixes.size());
  for (size_t i = 0; i < info.headTensorPrefixes.size(); ++i) {
    prefixes.Set(static_cast<uint32_t>(i), info.headTensorPrefixes[i]);
  }
  js.Set("headTensorPrefixes", prefixes);
  return js;
}

Napi::Value evaluateToJs(Napi::Env env, const engine::EvaluateResult& result) {
  auto js = Napi::Object::New(env);
  js.Set("logits", toFloat32Array(env, result.logits));
  js.Set("lossSum", result.hasLoss ? Napi::Value(Napi::Number::New(env, result.lossSum)) : env.Null());
  if (result.embeddingSize > 0) {
    js.Set("embeddings", toFloat32Array(env, result.embeddings));
    js.Set("embeddingSize", Napi::Number::New(env, static_cast<double>(result.embeddingSize)));
  } else {
    js.Set("embeddings", env.Null());
  }
  return js;
}

Napi::Value trainStepToJs(Napi::Env env, const engine::TrainStepResult& result) {
  auto js = Napi::Object::New(env);
  js.Set("loss", result.loss);
  js.Set("optimizerStepped", result.optimizerStepped);
  js.Set("step", Napi::Number::New(env, static_cast<double>(result.step)));
  js.Set("overflowSkipped", result.overflowSkipped);
  js.Set("lossScale", result.lossScale);
  return js;
}

// ---- Promise settlement across threads ------------------------------------------------------

struct Outcome {
  explicit Outcome(Napi::Promise::Deferred d) : deferred(d) {}
  std::function<Napi::Value(Napi::Env)> build;  // set on success
  std::string errorCode, errorMessage;          // set on failure
  Napi::Promise::Deferred deferred;
};

Napi::Error engineError(Napi::Env env, const std::string& code, const std::string& message) {
  auto error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

// Runs on the JS thread: builds the result (or the error) and settles the Promise.
void settle(Napi::Env env, Napi::Function, std::nullptr_t*, Outcome* raw) {
  std::unique_ptr<Outcome> outcome(raw);
  if (env == nullptr) return;  // the environment is shutting down
  if (outcome->build) {
    try {
      outcome->deferred.Resolve(outcome->build(env));
      return;
    } catch (const Napi::Error& e) {
      outcome->deferred.Reject(e.Value());
      return;
    } catch (const std::exception& e) {
      outcome->errorCode = "ERR_ENGINE_STD";
      outcome->errorMessage = e.what();
    }
  }
  // Runs as a libuv callback: an exception leaving it would terminate the process.
  try {
    outcome->deferred.Reject(engineError(env, outcome->errorCode, outcome->errorMessage).Value());
  } catch (...) {
  }
}

using Settler = Napi::TypedThreadSafeFunction<std::nullptr_t, Outcome, settle>;

// Runs `produce()` (engine thread), keeps its result or error in `outcome`, and hands the outcome
// to the JS thread, which builds the value with `toJs` and settles the Promise.
template <typename Produce, typename ToJs>
void deliver(Outcome* outcome, Settler settler, Produce&& produce, ToJs toJs) {
  try {
    auto result = engine::translateErrors(std::forward<Produce>(produce));
    // mutable: a builder may move the result's bytes into JS (it runs once).
    outcome->build = [result = std::move(result), toJs](Napi::Env env) mutable { return toJs(env, result); };
  } catch (const EngineFailure& failure) {
    outcome->errorCode = failure.code;
    outcome->errorMessage = failure.what();
  } catch (...) {  // e.g. bad_alloc while keeping the result
    outcome->errorCode = "ERR_ENGINE_STD";
    outcome->errorMessage = "the engine could not keep the result of this call (out of memory?)";
  }
  if (settler.BlockingCall(outcome) != napi_ok) delete outcome;
  settler.Release();
}

// What the engine thread owns; only ever touched on that thread.
struct EngineSlot {
  std::unique_ptr<engine::Engine> engine;
  std::string failureCode, failureMessage;  // construction failure, reported by every call
  // Train steps launched on the device whose Promises are not settled yet, oldest first.
  struct InFlight {
    std::unique_ptr<engine::PendingStep> step;
    Outcome* outcome;
    Settler settler;
  };
  std::deque<InFlight> inFlight;

  engine::Engine& get() {
    if (engine) return *engine;
    if (!failureCode.empty()) throw EngineFailure(failureCode, failureMessage);
    throw EngineFailure("ERR_ENGINE_DISPOSED", "this engine was disposed: create a new one");
  }

  void finishOldest() {
    auto entry = std::move(inFlight.front());
    inFlight.pop_front();
    deliver(entry.outcome, entry.settler, [&] { return get().finishTrainStep(*entry.step); }, trainStepToJs);
  }

  // Settles the launched steps that are done (all of them when `finishAll`); returns whether
  // some are still in flight.
  bool finishSteps(bool finishAll) {
    while (!inFlight.empty() && (finishAll || inFlight.front().step->ready())) finishOldest();
    return !inFlight.empty();
  }
};

struct Unit {};

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {InstanceMethod<&EngineWrap::Ready>("ready"),
                        InstanceMethod<&EngineWrap::TrainStep>("trainStep"),
                        InstanceMethod<&EngineWrap::BenchmarkSteps>("benchmarkSteps"),
                        InstanceMethod<&EngineWrap::FlushAccumulation>("flushAccumulation"),
                        InstanceMethod<&EngineWrap::Evaluate>("evaluate"),
                        InstanceMethod<&EngineWrap::ClassifyEmbeddings>("classifyEmbeddings"),
                        InstanceMethod<&EngineWrap::PreviewAugment>("previewAugment"),
                        InstanceMethod<&EngineWrap::GradCam>("gradCam"),
                        InstanceMethod<&EngineWrap::ExportState>("exportState"),
                        InstanceMethod<&EngineWrap::MemoryStats>("memoryStats"),
                        InstanceMethod<&EngineWrap::ImportState>("importState"),
                        InstanceMethod<&EngineWrap::Dispose>("dispose"),
                        InstanceMethod<&EngineWrap::StopForExit>("stopForExit"),
                        InstanceAccessor<&EngineWrap::Disposed>("disposed")});
  }

  explicit EngineWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<EngineWrap>(info),
        slot_(std::make_shared<EngineSlot>()) {
    worker_ = std::make_unique<engine::Worker>(
        [slot = slot_](bool finishAll) { return slot->finishSteps(finishAll); });
    if (info.Length() < 1 || !info[0].IsObject()) {
      throw Napi::TypeError::New(info.Env(), "engine: expected a config object");
    }
    const auto config = parseConfig(info[0].As<Napi::Object>());
    // The model is built on the engine thread, like everything else touching torch.
    worker_->post([slot = slot_, config] {
      try {
        slot->engine = engine::translateErrors([&] { return std::make_unique<engine::Engine>(config); });
      } catch (const EngineFailure& failure) {
        slot->failureCode = failure.code;
        slot->failureMessage = failure.what();
      }
    });
    // Join the thread when Node tears the environment down, even if this object is never
    // collected.
    napi_add_env_cleanup_hook(info.Env(), OnEnvironmentTeardown, this);
  }

  ~EngineWrap() override {
    if (!teardownRan_) napi_remove_env_cleanup_hook(Env(), OnEnvironmentTeardown, this);
    worker_->stop();
  }

 private:
  // The Promise of a call and what settles it from the engine thread; null `outcome` when the
  // engine is disposed (the Promise is then rejected already).
  struct Call {
    Napi::Promise::Deferred deferred;
    Outcome* outcome = nullptr;
    Settler settler;
  };
  Call startCall(Napi::Env env) {
    Call call{Napi::Promise::Deferred::New(env)};
    if (disposed_) {
      call.deferred.Reject(engineError(env, "ERR_ENGINE_DISPOSED",
                                       "this engine was disposed: create a new one")
                               .Value());
      return call;
    }
    call.settler = Settler::New(env, "melanoma-engine", 0, 1);
    call.outcome = new Outcome(call.deferred);
    return call;
  }

  // Queues `work(engine)` on the engine thread; `toJs(env, result)` builds the resolved value.
  template <typename Work, typename ToJs>
  Napi::Value schedule(Napi::Env env, Work work, ToJs toJs) {
    auto call = startCall(env);
    if (!call.outcome) return call.deferred.Promise();
    worker_->post([slot = slot_, settler = call.settler, outcome = call.outcome, work = std::move(work), toJs]() mutable {
      slot->finishSteps(/*finishAll=*/true);  // every other call sees the steps before it done
      deliver(outcome, settler, [&] { return work(*slot); }, toJs);
    });
    return call.deferred.Promise();
  }

  // A train step is launched and left in flight: the steps before it are settled only after it
  // is queued on the device, so the device never waits for the host between two steps that JS
  // submits back to back. Its own Promise settles when it is done (see Worker's idle poll).
  Napi::Value launchStep(Napi::Env env, engine::HostBatch batch) {
    auto call = startCall(env);
    if (!call.outcome) return call.deferred.Promise();
    worker_->post([slot = slot_, settler = call.settler, outcome = call.outcome, batch = std::move(batch)]() mutable {
      std::unique_ptr<engine::PendingStep> step;
      try {
        step = engine::translateErrors([&] { return slot->get().launchTrainStep(batch); });
      } catch (const EngineFailure& failure) {
        slot->finishSteps(/*finishAll=*/true);  // settle in order: the older steps first
        deliver(outcome, settler, [&]() -> engine::TrainStepResult { throw failure; }, trainStepToJs);
        return;
      }
      slot->finishSteps(/*finishAll=*/true);
      slot->inFlight.push_back({std::move(step), outcome, settler});
    });
    return call.deferred.Promise();
  }

  Napi::Value Ready(const Napi::CallbackInfo& info) {
    return schedule(
        info.Env(), [](EngineSlot& slot) { return slot.get().info(); },
        [](Napi::Env env, const engine::EngineInfo& result) { return infoToJs(env, result); });
  }

  Napi::Value TrainStep(const Napi::CallbackInfo& info) {
    return launchStep(info.Env(), parseBatch(info[0].As<Napi::Object>(), /*withLearningRate=*/true));
  }

  Napi::Value BenchmarkSteps(const Napi::CallbackInfo& info) {
    auto batch = parseBatch(info[0].As<Napi::Object>(), /*withLearningRate=*/true);
    if (info.Length() < 2 || !info[1].IsNumber() || info[1].As<Napi::Number>().Int64Value() < 1) {
      throw Napi::RangeError::New(info.Env(), "engine: benchmarkSteps needs a step count >= 1");
    }
    const int64_t steps = info[1].As<Napi::Number>().Int64Value();
    return schedule(
        info.Env(),
        [batch = std::move(batch), steps](EngineSlot& slot) { return slot.get().benchmarkSteps(batch, steps); },
        [](Napi::Env env, const engine::BenchmarkResult& result) -> Napi::Value {
          auto js = Napi::Object::New(env);
          js.Set("steps", Napi::Number::New(env, static_cast<double>(result.steps)));
          js.Set("seconds", result.seconds);
          js.Set("meanLoss", result.meanLoss);
          js.Set("optimizerSteps", Napi::Number::New(env, static_cast<double>(result.optimizerSteps)));
          return js;
        });
  }

  Napi::Value FlushAccumulation(const Napi::CallbackInfo& info) {
    const auto js = info[0].As<Napi::Object>();
    engine::HostBatch rates;
    rates.lr = numberField(js, "lr");
    rates.backboneLr = js.Get("backboneLr").IsNumber() ? numberField(js, "backboneLr") : rates.lr;
    return schedule(
        info.Env(), [rates](EngineSlot& slot) { return slot.get().flushAccumulation(rates); },
        trainStepToJs);
  }

  Napi::Value Evaluate(const Napi::CallbackInfo& info) {
    auto batch = parseBatch(info[0].As<Napi::Object>(), /*withLearningRate=*/false);
    return schedule(
        info.Env(),
        [batch = std::move(batch)](EngineSlot& slot) { return slot.get().evaluate(batch); },
        evaluateToJs);
  }

  Napi::Value ClassifyEmbeddings(const Napi::CallbackInfo& info) {
    auto batch = parseEmbeddingBatch(info[0].As<Napi::Object>());
    return schedule(
        info.Env(),
        [batch = std::move(batch)](EngineSlot& slot) { return slot.get().classifyEmbeddings(batch); },
        evaluateToJs);
  }

  Napi::Value PreviewAugment(const Napi::CallbackInfo& info) {
    auto batch = parseBatch(info[0].As<Napi::Object>(), /*withLearningRate=*/false);
    return schedule(
        info.Env(),
        [batch = std::move(batch)](EngineSlot& slot) { return slot.get().previewAugment(batch); },
        [](Napi::Env env, const std::vector<uint8_t>& images) -> Napi::Value {
          return Napi::Buffer<uint8_t>::Copy(env, images.data(), images.size());
        });
  }

  Napi::Value GradCam(const Napi::CallbackInfo& info) {
    auto batch = parseBatch(info[0].As<Napi::Object>(), /*withLearningRate=*/false);
    const auto context = info[0].As<Napi::Object>().Get("context");
    if (!context.IsUndefined() && !context.IsNull()) {
      if (!context.IsObject()) throw Napi::TypeError::New(info.Env(), "engine: 'context' must be an object");
      batch.context = std::make_shared<const engine::HostBatch>(parseContext(context.As<Napi::Object>()));
    }
    return schedule(
        info.Env(),
        [batch = std::move(batch)](EngineSlot& slot) { return slot.get().gradCam(batch); },
        [](Napi::Env env, const engine::GradCamResult& result) -> Napi::Value {
          auto js = Napi::Object::New(env);
          js.Set("maps", toFloat32Array(env, result.maps));
          js.Set("height", Napi::Number::New(env, static_cast<double>(result.height)));
          js.Set("width", Napi::Number::New(env, static_cast<double>(result.width)));
          js.Set("logits", toFloat32Array(env, result.logits));
          return js;
        });
  }

  Napi::Value ExportState(const Napi::CallbackInfo& info) {
    return schedule(
        info.Env(), [](EngineSlot& slot) { return slot.get().exportState(); },
        [](Napi::Env env, engine::EngineState& state) -> Napi::Value {
          auto js = Napi::Object::New(env);
          js.Set("model", tensorsToJs(env, state.model));
          js.Set("optimizer", tensorsToJs(env, state.optimizer));
          js.Set("step", Napi::Number::New(env, static_cast<double>(state.step)));
          js.Set("backboneStep", Napi::Number::New(env, static_cast<double>(state.backboneStep)));
          js.Set("lossScale", state.lossScale);
          js.Set("rngState",
                 Napi::Buffer<uint8_t>::Copy(env, state.rngState.data(), state.rngState.size()));
          if (!state.unsaveable.empty()) js.Set("unsaveable", state.unsaveable);
          return js;
        });
  }

  Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
    const bool resetPeak = info.Length() > 0 && info[0].ToBoolean().Value();
    return schedule(
        info.Env(), [resetPeak](EngineSlot& slot) { return slot.get().memoryStats(resetPeak); },
        [](Napi::Env env, const engine::MemoryStats& stats) -> Napi::Value {
          if (!stats.available) return env.Null();
          auto js = Napi::Object::New(env);
          js.Set("allocatedBytes", Napi::Number::New(env, static_cast<double>(stats.allocatedBytes)));
          js.Set("peakAllocatedBytes", Napi::Number::New(env, static_cast<double>(stats.peakAllocatedBytes)));
          js.Set("reservedBytes", Napi::Number::New(env, static_cast<double>(stats.reservedBytes)));
          return js;
        });
  }

  Napi::Value ImportState(const Napi::CallbackInfo& info) {
    auto state = parseState(info[0].As<Napi::Object>());
    const bool strict = info.Length() < 2 || info[1].ToBoolean().Value();
    return schedule(
        info.Env(),
        [state = std::move(state), strict](EngineSlot& slot) {
          slot.get().importState(state, strict);
          return Unit{};
        },
        [](Napi::Env env, Unit) { return env.Undefined(); });
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    auto promise = schedule(
        info.Env(),
        [](EngineSlot& slot) {
          slot.engine.reset();  // frees parameters, optimizer state and cached device memory
          return Unit{};
        },
        [](Napi::Env env, Unit) { return env.Undefined(); });
    disposed_ = true;
    worker_->requestStop();  // the thread ends after the dispose job; no later job can be queued
    return promise;
  }

  // Synchronous, from process.on('exit'): Node's exit() (process.exit, an uncaught exception)
  // runs no environment cleanup hooks, and a step still running on the engine thread would then
  // crash inside LibTorch as its static objects are destroyed. The calls not yet started are
  // dropped (their Promises never settle: the process is ending).
  Napi::Value StopForExit(const Napi::CallbackInfo& info) {
    disposed_ = true;
    worker_->abandon();
    return info.Env().Undefined();
  }

  Napi::Value Disposed(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), disposed_);
  }

  std::unique_ptr<engine::Worker> worker_;
  std::shared_ptr<EngineSlot> slot_;
  bool disposed_ = false;
  bool teardownRan_ = false;

  static void OnEnvironmentTeardown(void* self) {
    auto* wrap = static_cast<EngineWrap*>(self);
    wrap->teardownRan_ = true;
    wrap->worker_->stop();
  }
};

Napi::Value TorchInfo(const Napi::CallbackInfo& info) {
  const auto env = info.Env();
  try {
    const auto torch = engine::translateErrors([] { return engine::torchInfo(); });
    auto js = Napi::Object::New(env);
    js.Set("torchVersion", torch.torchVersion);
    js.Set("cudaAvailable", torch.cudaAvailable);
    js.Set("cudaDeviceCount", Napi::Number::New(env, static_cast<double>(torch.cudaDeviceCount)));
    js.Set("cudnnAvailable", torch.cudnnAvailable);
    js.Set("compiledWithCuda", torch.compiledWithCuda);
    js.Set("cudaGraphs", torch.cudaGraphs);
    js.Set("nvjpeg", torch.nvjpeg);
    return js;
  } catch (const EngineFailure& failure) {
    throw engineError(env, failure.code, failure.what());
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Define(env));
  exports.Set("torchInfo", Napi::Function::New(env, TorchInfo));
  return exports;
}

}  // namespace

NODE_API_MODULE(engine, Init)
