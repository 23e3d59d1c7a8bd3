/**
 * The single typed surface of the two native addons.
 *
 * - `io` (binding.gyp, node-gyp, no LibTorch): TFRecord framing, CRC32C, tf.Example parsing.
 * - `engine` (CMakeLists.txt, cmake-js, LibTorch): EfficientNet training and inference.
 *
 * Nothing else in the package loads a `.node` file. A failed load becomes an error that says
 * what is missing and the command that fixes it; everything that only reads data works without
 * the engine (and so without LibTorch).
 */
import * as path from 'path';
import { types } from 'util';
// node-gyp-build has no type declarations: it is a function from a package folder to the addon.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const nodeGypBuild: (dir: string) => unknown = require('node-gyp-build');

/** Package root: dist/native.js and src/native.ts both sit one level below it. */
export const PACKAGE_ROOT = path.resolve(__dirname, '..');

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/** The native addon could not be loaded (not built, LibTorch missing, wrong ABI). */
export class NativeLoadError extends Error {
  override name = 'NativeLoadError';
}

/**
 * A failure inside the engine: a LibTorch error (`c10::Error`), a C++ exception, or a misuse of
 * the engine's state (disposed, wrong device). `code` tells which; `message` carries the native
 * text.
 */
export class EngineError extends Error {
  override name = 'EngineError';
  constructor(
    message: string,
    readonly code: EngineErrorCode,
  ) {
    super(message);
  }
}

export type EngineErrorCode =
  | 'ERR_ENGINE_TORCH' // c10::Error from LibTorch (shape mismatch, CUDA error, out of memory ...)
  | 'ERR_ENGINE_STD' // another std::exception
  | 'ERR_ENGINE_DISPOSED' // the engine was disposed
  | 'ERR_ENGINE_DEVICE' // the requested device is not available in this LibTorch build
  | 'ERR_ENGINE_NONFINITE' // a NaN/inf loss in fp32 (or bf16) training
  | 'ERR_ENGINE_OOM' // out of device or host memory
  | 'ERR_ENGINE_STATE'; // weights/checkpoint tensors that do not fit the model

function translateEngineError(err: unknown): Error {
  // The addon creates its errors in the context it was loaded in, which need not be the caller's
  // (jest and other vm contexts): `instanceof Error` is false there, so check the native kind.
  if (err instanceof Error || types.isNativeError(err)) {
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_ENGINE_')) {
      const translated = new EngineError(err.message, code as EngineErrorCode);
      translated.stack = `${translated.name}: ${err.message}\n${(new Error().stack ?? '').split('\n').slice(2).join('\n')}`;
      return translated;
    }
    return err;
  }
  return new Error(String(err));
}

// ---------------------------------------------------------------------------------------------
// Engine addon
// ---------------------------------------------------------------------------------------------

/** One stage of an EfficientNet after width/depth scaling (see src/model/architectures.ts). */
export interface StageSpec {
  repeats: number;
  kernel: number;
  stride: number;
  expandRatio: number;
  outChannels: number;
}

/** A fully resolved architecture: C++ builds exactly this and decides nothing. */
export interface ModelSpec {
  stemChannels: number;
  stages: StageSpec[];
  headChannels: number;
  seRatio: number;
  /** Stochastic depth rate of the last block; block i gets dropPathRate * i / nBlocks. */
  dropPathRate: number;
  /** Width of the optional hidden dense layer of the head; 0 = direct Linear(features, 1). */
  headHidden: number;
  /** Dropout before the output layer (and after the hidden layer when there is one). */
  headDropout: number;
  /** Metadata values per image fused with the image features (0 = images only; src/data/metadata.ts). */
  metadataFeatures: number;
  /** Units of the metadata branch's two hidden layers (0 without metadata). */
  metadataHidden: number;
  /**
   * Patient context: width of the attention of each image over the other images of its patient
   * that the head sees with it (a batch's, see ImageBatch.groups; classifyEmbeddings: the rows
   * given); 0 = each image is scored alone.
   */
  contextDim: number;
  bnEps: number;
  bnMomentum: number;
  /** 'symmetric' (torchvision, timm) or TensorFlow 'same' (lukemelas, timm tf_*). */
  padding: 'symmetric' | 'same';
}

/**
 * Training-time augmentation, applied by the engine on the device to each train batch (never to
 * evaluation). Every transform has a probability (per image) and a magnitude; 0 probability
 * turns it off. Draws come from the engine's seeded generator: the same seed gives the same
 * augmented batches on CPU.
 */
export interface AugmentSpec {
  /** Horizontal flip, and independently vertical flip, each with this probability. */
  flip: number;
  /** Swap of the image axes (a flip along the diagonal). */
  transpose: number;
  /** Shift-scale-rotate: one affine warp per image (reflection at the borders). */
  affine: number;
  rotateDegrees: number;
  /** Shift as a fraction of the image side. */
  shift: number;
  /** Scale in [1 - scale, 1 + scale]. */
  scale: number;
  brightness: number;
  /** Brightness factor in [1 - magnitude, 1 + magnitude]. */
  brightnessMagnitude: number;
  contrast: number;
  contrastMagnitude: number;
  saturation: number;
  saturationMagnitude: number;
  hue: number;
  /** Hue rotation in [-magnitude, magnitude] of a full turn. */
  hueMagnitude: number;
  /** Cutout: one square hole per image filled with the ImageNet mean. */
  cutout: number;
  /** Hole side as a fraction of the image side. */
  cutoutSize: number;
}

/** The one plain, fully defaulted object that crosses into C++ when an engine is created. */
export interface EngineConfig {
  model: ModelSpec;
  device: 'cpu' | 'cuda';
  precision: 'fp32' | 'bf16' | 'fp16';
  seed: number;
  /** Adam / AdamW hyper-parameters; the learning rate itself comes with every train step. */
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Positive-class weight of BCE-with-logits (negatives / positives of the training fold). */
  posWeight: number;
  labelSmoothing: number;
  /** Optimizer step every N train steps (micro-batches); the loss is divided by N. */
  accumulateSteps: number;
  /** Keep BatchNorm in eval mode (running statistics) during training steps. */
  freezeBatchNorm: boolean;
  channelsLast: boolean;
  /**
   * CUDA only: capture the whole training step (forward, backward, loss scaling, fused AdamW)
   * once per batch shape as a CUDA graph and replay it. Needs `torchInfo().cudaGraphs`.
   */
  cudaGraph: boolean;
  /**
   * Make the GPU JPEG decoder (nvJPEG) with the engine: fails at once where there is none, and
   * info().jpegBackend names its backend. JPEG batches make one on demand anyway.
   */
  nvjpeg?: boolean;
  augment: AugmentSpec;
}

/**
 * A batch as it crosses the boundary: uint8 HWC RGB images, row-major, one Buffer; or, for an
 * engine on CUDA built with nvJPEG (`torchInfo().nvjpeg`), the JPEG files themselves, which the
 * engine decodes on the GPU and resizes to height x width. Exactly one of the two.
 */
export interface ImageBatch {
  images?: Buffer;
  /** One JPEG file per image (instead of `images`). */
  jpegs?: Buffer[];
  /** With `jpegs`: non-square images are stretched ('fill', default) or centre-cropped ('cover'). */
  fit?: 'fill' | 'cover';
  batchSize: number;
  height: number;
  width: number;
  /** batchSize x metadataFeatures values, row-major; required by a model with a metadata branch. */
  metadata?: Float32Array;
  /**
   * For a model with patient context: one number per image, equal for images of the same
   * patient. Absent: every image is its own patient (scored without context).
   */
  groups?: Int32Array;
}

export interface TrainStepRequest extends ImageBatch {
  labels: Float32Array;
  /** Learning rate of the head (classifier, head_fc), and of the backbone unless backboneLr is given. */
  lr: number;
  backboneLr?: number;
  /**
   * Backbone parameters get no gradients and no updates, and its BatchNorms keep their running
   * statistics (fine-tuning a pretrained backbone: train the fresh head first). Takes effect at
   * the start of an accumulation window.
   */
  freezeBackbone?: boolean;
}

export interface TrainStepResult {
  /** Loss of this micro-batch (not divided by accumulateSteps). */
  loss: number;
  /** Whether this call ended an accumulation window and stepped the optimizer. */
  optimizerStepped: boolean;
  /** Optimizer steps taken so far (skipped fp16 overflow steps not included). */
  step: number;
  /** fp16 only: the step was skipped because gradients overflowed; the loss scale shrank. */
  overflowSkipped: boolean;
  lossScale: number;
}

export interface BenchmarkStepsResult {
  steps: number;
  /** Engine-thread wall time of the steps, up to the completion of the last one. */
  seconds: number;
  meanLoss: number;
  optimizerSteps: number;
}

export interface EvaluateRequest extends ImageBatch {
  /** When given, the (class-weighted) loss summed over the batch is returned too. */
  labels?: Float32Array;
  /** Also return each image's embedding: the pooled features the classifier reads. */
  embeddings?: boolean;
}

/**
 * The head alone (`Engine.classifyEmbeddings`): pooled features as evaluate returned them, with
 * what the head reads besides (metadata, patient groups), and labels for the loss.
 */
export interface ClassifyEmbeddingsRequest {
  /** batchSize x embeddingSize floats, row-major, each row an image's `embeddings` from evaluate. */
  embeddings: Float32Array;
  batchSize: number;
  metadata?: Float32Array;
  groups?: Int32Array;
  labels?: Float32Array;
}

/**
 * Grad-CAM of a patient-context model: the batch's images plus the other images of their patients
 * as pooled features, which the head sees beside the batch as constants (they get no maps).
 */
export interface GradCamRequest extends ImageBatch {
  context?: {
    /** One row per image, embeddingSize floats each (from evaluate with `embeddings: true`). */
    embeddings: Float32Array;
    /** Their patients, numbered as the batch's `groups` (which are then required). */
    groups: Int32Array;
    /** Their metadata rows, for a model with a metadata branch. */
    metadata?: Float32Array;
  };
}

export interface EvaluateResult {
  logits: Float32Array;
  lossSum: number | null;
  /** With `embeddings`: batchSize x embeddingSize floats, row-major; else null. */
  embeddings: Float32Array | null;
  embeddingSize?: number;
}

/**
 * Grad-CAM of each image's melanoma logit at the last feature map, raw: sum over channels of
 * (spatial mean of d logit / d A_c) x A_c. For a head that is pooling + Linear, a map sums to
 * logit - bias. Positive values push towards melanoma.
 */
export interface GradCamResult {
  /** batchSize x height x width, row-major. */
  maps: Float32Array;
  height: number;
  width: number;
  logits: Float32Array;
}

export type TensorDType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

/** A named tensor as plain bytes (little-endian, contiguous): the unit of checkpoints. */
export interface NamedTensor {
  name: string;
  dtype: TensorDType;
  shape: number[];
  data: Buffer;
}

export interface EngineState {
  /** Model parameters and buffers, named as timm names them (`blocks.1.0.conv_pw.weight`). */
  model: NamedTensor[];
  /** Optimizer moments, named after the parameter they belong to. */
  optimizer: NamedTensor[];
  /** Scalars that complete the training state (step, loss scale, RNG seed stream). */
  step: number;
  /** Adam steps of the backbone (fewer than `step` when it was frozen); default: step. */
  backboneStep?: number;
  lossScale: number;
  /** Opaque generator state of the engine's RNG (CPU generator), so a resumed run draws the same. */
  rngState: Buffer;
  /**
   * Export only: set when this state must not become a checkpoint, and why (a non-finite batch
   * left non-finite BatchNorm statistics; the sentence ends with the way back). Trainer.save refuses it.
   */
  unsaveable?: string;
}

/**
 * How a train step runs: 'host' (CPU, or LibTorch < 2.4: host scalars, multi-tensor Adam),
 * 'device' (CUDA: scalars on the device, fused AdamW, one read-back per step), 'graph' ('device'
 * replayed as a CUDA graph).
 */
export type StepMode = 'host' | 'device' | 'graph';

export interface EngineInfo {
  parameterCount: number;
  device: string;
  precision: string;
  stepMode: StepMode;
  /** The nvJPEG backend that decoded its JPEG batches ('hardware': the GPU's JPEG engines; 'cuda'), null before any. */
  jpegBackend: 'hardware' | 'cuda' | null;
  parameterNames: string[];
  /**
   * Name prefixes of the head's tensors (the layers after pooling, the metadata and
   * patient-context branches among them): they train at the head's learning rate, and importing
   * pretrained weights leaves them fresh. The engine's one list, read here so TS repeats none.
   */
  headTensorPrefixes: string[];
}

export interface TorchInfo {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  cudnnAvailable: boolean;
  /** Whether this build of the engine was compiled with CUDA code paths. */
  compiledWithCuda: boolean;
  /** Whether it has the device-resident CUDA step and CUDA graphs (CUDA LibTorch >= 2.4). */
  cudaGraphs: boolean;
  /** Whether it decodes JPEG batches on the GPU (built with the CUDA toolkit's nvJPEG). */
  nvjpeg: boolean;
}

/** Device memory from LibTorch's CUDA caching allocator, in bytes. */
export interface MemoryStats {
  allocatedBytes: number;
  peakAllocatedBytes: number;
  reservedBytes: number;
}

/** The raw native class; use `Engine` below, which adds error translation. */
interface NativeEngine {
  /** Resolves once the model is built on the engine thread (rejects if that failed). */
  ready(): Promise<EngineInfo>;
  trainStep(request: TrainStepRequest): Promise<TrainStepResult>;
  benchmarkSteps(request: TrainStepRequest, steps: number): Promise<BenchmarkStepsResult>;
  flushAccumulation(rates: { lr: number; backboneLr?: number }): Promise<TrainStepResult>;
  evaluate(request: EvaluateRequest): Promise<EvaluateResult>;
  classifyEmbeddings(request: ClassifyEmbeddingsRequest): Promise<EvaluateResult>;
  previewAugment(request: ImageBatch): Promise<Buffer>;
  gradCam(request: GradCamRequest): Promise<GradCamResult>;
  exportState(): Promise<EngineState>;
  memoryStats(resetPeak: boolean): Promise<MemoryStats | null>;
  importState(state: Partial<EngineState> & { model: NamedTensor[] }, strict: boolean): Promise<void>;
  dispose(): Promise<void>;
  /** Synchronous: drops the queued calls and joins the engine thread (process exit only). */
  stopForExit(): void;
  readonly disposed: boolean;
}

interface EngineAddon {
  Engine: new (config: EngineConfig) => NativeEngine;
  torchInfo(): TorchInfo;
}

let engineAddon: EngineAddon | undefined;

function engineFixHint(): string {
  return [
    'Possible solutions:',
    '- Build it: `npm run build:engine` (needs CMake, a C++17 compiler and LibTorch).',
    '- Install LibTorch: `sudo apt-get install -y libtorch-dev` (Debian/Ubuntu, CPU), or point the build at',
    '  an existing one: `Torch_DIR=/path/to/libtorch/share/cmake/Torch npm run build:engine`, or at a',
    '  PyTorch install: `CMAKE_PREFIX_PATH=$(python3 -c "import torch;print(torch.utils.cmake_prefix_path)") npm run build:engine`.',
    '- If it was built against a PyTorch LibTorch, its lib folder must be on LD_LIBRARY_PATH at run time.',
  ].join('\n');
}

export function loadEngineAddon(): EngineAddon {
  if (engineAddon) return engineAddon;
  const dir = path.join(PACKAGE_ROOT, 'native', 'engine');
  try {
    engineAddon = nodeGypBuild(dir) as EngineAddon;
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new NativeLoadError(
      `The training engine addon could not be loaded from ${path.join(dir, 'build', 'Release')}: ${reason}\n${engineFixHint()}`,
    );
  }
  return engineAddon;
}

/** LibTorch build facts: version, CUDA, cuDNN. */
export function torchInfo(): TorchInfo {
  return loadEngineAddon().torchInfo();
}

/**
 * The engines not disposed yet. Node's exit() (process.exit, an uncaught exception) runs no
 * addon cleanup, and an engine thread still inside a training step then crashes in LibTorch as
 * its static objects are destroyed (a segfault, exit 139, instead of the process's own code).
 * So at 'exit' every live engine thread is stopped first. Weak, so a forgotten engine is still
 * garbage-collected.
 */
const liveEngines = new Set<WeakRef<NativeEngine>>();
const collected = new FinalizationRegistry<WeakRef<NativeEngine>>((ref) => liveEngines.delete(ref));
let exitHookInstalled = false;

function trackUntilExit(native: NativeEngine): WeakRef<NativeEngine> {
  const ref = new WeakRef(native);
  liveEngines.add(ref);
  collected.register(native, ref);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      // typeof: an engine.node built before stopForExit existed still lets the process exit.
      for (const live of liveEngines) {
        const engine = live.deref();
        if (typeof engine?.stopForExit === 'function') engine.stopForExit();
      }
      liveEngines.clear();
    });
  }
  return ref;
}

/**
 * One model with its optimizer state, living on one device, driven by one dedicated native
 * thread. Every call returns a Promise and never blocks the event loop.
 */
export class Engine {
  private constructor(
    private readonly native: NativeEngine,
    private readonly engineInfo: EngineInfo,
    private readonly tracked: WeakRef<NativeEngine>,
  ) {}

  /**
   * Builds the model on a new engine thread. The config must come fully validated and defaulted
   * (see src/model/config.ts): C++ does not re-validate user input.
   */
  static async create(config: EngineConfig): Promise<Engine> {
    const addon = loadEngineAddon();
    let native: NativeEngine;
    try {
      native = new addon.Engine(config);
    } catch (err) {
      throw translateEngineError(err);
    }
    const tracked = trackUntilExit(native); // from now: the model is built on its thread
    try {
      return new Engine(native, await native.ready(), tracked);
    } catch (err) {
      await native.dispose().catch(() => undefined);
      liveEngines.delete(tracked);
      throw translateEngineError(err);
    }
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw translateEngineError(err);
    }
  }

  trainStep(request: TrainStepRequest): Promise<TrainStepResult> {
    return this.call(() => this.native.trainStep(request));
  }

  /**
   * `steps` real train steps on one batch, staged on the device once, with no read-back between
   * steps (on CUDA): the model-side throughput with the data already on the device, as the
   * Python baseline measures it. Trains the model like `trainStep` does; for benchmarks only.
   */
  benchmarkSteps(request: TrainStepRequest, steps: number): Promise<BenchmarkStepsResult> {
    return this.call(() => this.native.benchmarkSteps(request, steps));
  }

  /**
   * Steps the optimizer on an unfinished accumulation window (the micro-batches since the last
   * step, averaged); a no-op when none is pending. Called at the end of each epoch, so that no
   * gradients are pending when a checkpoint is written.
   */
  flushAccumulation(rates: { lr: number; backboneLr?: number }): Promise<TrainStepResult> {
    return this.call(() => this.native.flushAccumulation(rates));
  }

  evaluate(request: EvaluateRequest): Promise<EvaluateResult> {
    return this.call(() => this.native.evaluate(request));
  }

  /**
   * The head on pooled features from `evaluate({ embeddings: true })`: the logits (and loss)
   * evaluate gives, for as many images at once as the caller likes. With patient context, the
   * Trainer scores whole patients this way, however many images they have (eval mode, no grad).
   */
  classifyEmbeddings(request: ClassifyEmbeddingsRequest): Promise<EvaluateResult> {
    return this.call(() => this.native.classifyEmbeddings(request));
  }

  /**
   * The batch as a train step would see it after augmentation (uint8 HWC, same shape), drawn
   * from the engine's generator: for looking at augmentations, and for testing them.
   */
  previewAugment(request: ImageBatch): Promise<Buffer> {
    return this.call(() => this.native.previewAugment(request));
  }

  /** Grad-CAM maps of the batch (eval mode, fp32); training state is untouched. */
  gradCam(request: GradCamRequest): Promise<GradCamResult> {
    return this.call(() => this.native.gradCam(request));
  }

  exportState(): Promise<EngineState> {
    return this.call(() => this.native.exportState());
  }

  /**
   * Device memory now and at its peak (since the engine was made, or the last reset); null on
   * CPU. `resetPeak` starts a new peak window after reading.
   */
  memoryStats({ resetPeak = false }: { resetPeak?: boolean } = {}): Promise<MemoryStats | null> {
    return this.call(() => this.native.memoryStats(resetPeak));
  }

  /** strict: every model tensor must be present; unknown names and wrong shapes always fail. */
  importState(state: Partial<EngineState> & { model: NamedTensor[] }, strict = true): Promise<void> {
    return this.call(() => this.native.importState(state, strict));
  }

  /** Parameter count, device, parameter names (fixed when the model was built). */
  info(): EngineInfo {
    return this.engineInfo;
  }

  get disposed(): boolean {
    return this.native.disposed;
  }

  /** Frees the model, its optimizer state and device memory; later calls reject. */
  dispose(): Promise<void> {
    // Tracked until the thread has freed the model: an exit meanwhile still waits for it.
    return this.call(() => this.native.dispose()).finally(() => liveEngines.delete(this.tracked));
  }
}

// ---------------------------------------------------------------------------------------------
// IO addon (TFRecord framing, CRC32C, tf.Example): typed by the data pipeline
// ---------------------------------------------------------------------------------------------

/** Options of the record scanners; every field is optional. */
export interface IoScanOptions {
  /** Check both masked CRC32Cs of every record (default true). */
  verifyCrc?: boolean;
  /** Stop quietly before an incomplete last record instead of failing (streaming reads). */
  partial?: boolean;
  /** File offset of the first scanned byte: offsets and messages are absolute. */
  baseOffset?: number;
  /** Record index of the first scanned record (for messages). */
  firstIndex?: number;
  /** Named in error messages. */
  file?: string;
}

/** Record spans found by a scan: offsets[i] is where payload i starts, lengths[i] its size. */
export interface IoScanResult {
  offsets: Float64Array;
  lengths: Float64Array;
  /** Bytes of complete records from the start of the scanned data. */
  consumed: number;
  /** Bytes scanned (the file size for scanFile). */
  size: number;
}

/**
 * One feature of a tf.train.Example. Bytes values are not copied: `spans` holds
 * (offset, length) pairs into the parsed buffer.
 */
export type IoFeature =
  | { key: string; kind: 'bytes'; spans: Float64Array }
  | { key: string; kind: 'float'; values: Float32Array }
  | { key: string; kind: 'int64'; values: BigInt64Array }
  | { key: string; kind: 'none' };

/**
 * Errors thrown by the io addon carry `code`:
 * - ERR_TFRECORD_TRUNCATED / ERR_TFRECORD_CRC / ERR_TFRECORD_IO with `recordIndex`, `offset`
 *   (the record's first byte), `detail` and `file` (when one was given);
 * - ERR_EXAMPLE_MALFORMED with `offset` (where in the payload parsing failed).
 */
export interface IoAddon {
  /** CRC32C (Castagnoli); `impl` forces a path (tests compare them), `initial` continues a CRC. */
  crc32c(bytes: Uint8Array, impl?: 'auto' | 'hardware' | 'software', initial?: number): number;
  /** Whether the SSE4.2 crc32 instruction is used (x86 CPUs since 2008). */
  crc32cHardwareAvailable(): boolean;
  /** TFRecord's CRC mask: ((crc >>> 15) | (crc << 17)) + 0xa282ead8. */
  maskCrc(crc: number): number;
  unmaskCrc(masked: number): number;
  /** Synchronous scan of in-memory TFRecord bytes. */
  scanBuffer(bytes: Uint8Array, options?: IoScanOptions): IoScanResult;
  /** Scan of a file on the libuv pool, reading it piecewise (multi-GB files stay out of memory). */
  scanFile(path: string, options?: Omit<IoScanOptions, 'file' | 'partial' | 'baseOffset' | 'firstIndex'>): Promise<IoScanResult>;
  /** Decodes a tf.train.Example payload; every length is bounds-checked. */
  parseExample(bytes: Uint8Array): IoFeature[];
  /** Frames payloads as TFRecords (length, masked CRCs) into one Buffer. */
  frameRecords(payloads: Uint8Array[]): Buffer;
}

let ioAddon: IoAddon | undefined;

export function loadIoAddon(): IoAddon {
  if (ioAddon) return ioAddon;
  try {
    ioAddon = nodeGypBuild(PACKAGE_ROOT) as IoAddon;
  } catch (err) {
    const reason = err instanceof Error ? err.message.split('\n')[0] : String(err);
    throw new NativeLoadError(
      `The io addon (TFRecord reading) could not be loaded from ${path.join(PACKAGE_ROOT, 'build', 'Release')}: ${reason}\n` +
        'Possible solutions:\n- Build it: `npm run build:io` (needs python3, make and a C++ compiler; no LibTorch).',
    );
  }
  return ioAddon;
}
