/**
 * Training options: their defaults (the report's settings), their validation, and the one plain
 * EngineConfig that crosses into C++. Validation happens here and only here; messages name the
 * option, what was expected and what arrived (sharp's style).
 */
import * as os from 'os';
import { AugmentSpec, EngineConfig, torchInfo } from '../native';
import { METADATA_FEATURES, METADATA_HIDDEN } from '../data/metadata';
import { DECODE_BACKENDS, DecodeBackend } from '../data/types';
import { ArchitectureOptions, MODEL_NAMES, ModelName, buildModelSpec, isModelName } from './architectures';
import { ImageSizeStage, SCHEDULE_NAMES, ScheduleName, progressiveEpochs } from '../train/schedule';
import { refuseUnknownOptions } from '../options';

export type Device = 'cpu' | 'cuda';
export type Precision = 'fp32' | 'bf16' | 'fp16';

export interface TrainerOptions {
  /** EfficientNet variant (the report: efficientnet-b0). */
  model?: ModelName;
  /** Square input size in pixels (the report: 256). */
  imageSize?: number;
  /** Images per micro-batch (the report: 8). */
  batchSize?: number;
  /** Adam learning rate (the report: 1e-3). */
  lr?: number;
  epochs?: number;
  /** Decoupled (AdamW) weight decay; 0 = plain Adam. */
  weightDecay?: number;
  /** Positive-class weight of the BCE loss: 'auto' = negatives / positives of the training set. */
  posWeight?: number | 'auto';
  labelSmoothing?: number;
  /** Optimizer step every N micro-batches (effective batch = batchSize x accumulate). */
  accumulate?: number;
  /** 'auto': CUDA when this LibTorch sees a GPU, else CPU. */
  device?: Device | 'auto';
  /** 'auto': bf16 on CUDA, fp32 on CPU. Mixed precision needs CUDA. */
  precision?: Precision | 'auto';
  seed?: number;
  /** Images decoded at once by sharp (the report's --workers). Default: CPU cores. */
  workers?: number;
  /**
   * Where training batches' JPEGs are decoded: 'sharp' (default: on the CPU, `workers` at once)
   * or 'nvjpeg' (read on the CPU, decoded and resized on the GPU; needs --device cuda and an
   * engine built with nvJPEG, `torchInfo().nvjpeg`). Scoring (validation, predict) uses sharp.
   */
  decode?: DecodeBackend;
  /** Batches decoded ahead of the engine. */
  prefetch?: number;
  /** Width of a hidden dense layer in the head; 0 = Linear(features, 1), as in the report. */
  headHidden?: number;
  /**
   * Fuse patient metadata with the image features (sex, age, anatomic site, images per patient;
   * src/data/metadata.ts) through a small MLP branch. Default off: the report used images only.
   */
  metadata?: boolean;
  /**
   * Patient context inside the network: each image attends over the pooled features of the other
   * images of its patient that the head sees with it (an attention of this many units), and what
   * it attends to joins the head, so the model can learn the "ugly duckling" sign end to end.
   * Training batches then keep runs of a patient's images together; scoring runs the head on whole
   * patients, so each image is scored (and explained) beside all the others of its patient in the
   * set, however many. An image without a patient_id is scored alone. 0 (default) = each image
   * alone, as in the report.
   */
  patientContext?: number;
  /**
   * With patientContext: the most images of one patient a training batch takes together (each
   * image then trains beside up to this many minus one of its patient's others). 0 (default) = a
   * quarter of the batch, at least 2, so a batch keeps several patients for BatchNorm; raise it
   * to train with more context, as scoring (whole patients) has.
   */
  patientRunLength?: number;
  /** Dropout before the output layer; default: the variant's own (0.2 for b0). */
  headDropout?: number;
  /** Stochastic depth rate of the last block. */
  dropPathRate?: number;
  /** Multiply every channel count (e.g. 0.25 for a tiny model on CPU); 1 = the real network. */
  widthFactor?: number;
  /** Keep only the first N of the 7 stages (tiny models for tests and the demo). */
  stageLimit?: number;
  /** BatchNorm uses running statistics during training (fine-tuning small batches). */
  freezeBatchNorm?: boolean;
  /** Keep activations in channels_last (default: on for CUDA). */
  channelsLast?: boolean;
  /**
   * Capture the whole training step as a CUDA graph and replay it (default: on for CUDA when the
   * engine was built against a CUDA LibTorch >= 2.4; see `torchInfo().cudaGraphs`).
   */
  cudaGraph?: boolean;
  /**
   * Train-time augmentation on the device: 'none', 'report' (the report's random flips, rotations
   * and brightness), 'strong' (adds transpose, shift-scale-rotate, contrast, saturation, hue,
   * cutout), or a preset name plus overrides: { preset: 'report', cutout: 0.5 }.
   */
  augment?: AugmentPreset | ({ preset?: AugmentPreset } & Partial<AugmentSpec>);
  /**
   * Learning-rate schedule, applied per optimizer step (src/train/schedule.ts): 'constant',
   * 'cosine' (down to minLr at the last epoch), 'step' (x lrDecay every stepEpochs) or 'plateau'
   * (x lrDecay when validation AUC has not improved for plateauPatience epochs).
   */
  schedule?: ScheduleName;
  /** Linear warm-up from ~0 to lr over this many epochs (fractions allowed), before any schedule. */
  warmupEpochs?: number;
  /** Floor of the cosine schedule. */
  minLr?: number;
  /** Epochs between the step schedule's cuts. */
  stepEpochs?: number;
  /** Factor of each cut of the step and plateau schedules. */
  lrDecay?: number;
  /** Epochs without a better validation AUC before the plateau schedule cuts the rate. */
  plateauPatience?: number;
  /** Stop when validation AUC has not improved for this many epochs; 0 = off. */
  earlyStopping?: number;
  /**
   * Progressive resizing: stages in order, e.g. [{ size: 128, epochs: 2 }, { size: 256, epochs: 3 }]
   * trains 2 epochs at 128 px then 3 at 256 px with the same weights; the last size continues
   * after the stages. null (default): imageSize throughout.
   */
  imageSizes?: readonly ImageSizeStage[] | null;
  /**
   * Start from imported ImageNet weights (`melanoma weights import`): a name in weights/ or the
   * path of an imported .safetensors file. The architecture (model, width, padding, BatchNorm eps
   * and momentum) follows the weights; the classification head starts fresh.
   */
  pretrained?: string | null;
  /** Fine-tuning: train only the head (backbone frozen, its BatchNorm statistics kept) for the first N epochs. */
  freezeBackboneEpochs?: number;
  /** Fine-tuning: the backbone's learning rate is the head's times this factor (e.g. 0.1). */
  backboneLrFactor?: number;
  /** Convolution padding: 'symmetric' (torchvision, timm) or TensorFlow 'same' (lukemelas, timm tf_*). */
  padding?: 'symmetric' | 'same';
  /** BatchNorm epsilon; default 1e-5, or 1e-3 with 'same' padding (TensorFlow ports). */
  bnEps?: number;
  /** BatchNorm momentum; default 0.1, or 0.01 with 'same' padding. */
  bnMomentum?: number;
}

export type AugmentPreset = 'none' | 'report' | 'strong';

const NO_AUGMENT: AugmentSpec = {
  flip: 0,
  transpose: 0,
  affine: 0,
  rotateDegrees: 0,
  shift: 0,
  scale: 0,
  brightness: 0,
  brightnessMagnitude: 0,
  contrast: 0,
  contrastMagnitude: 0,
  saturation: 0,
  saturationMagnitude: 0,
  hue: 0,
  hueMagnitude: 0,
  cutout: 0,
  cutoutSize: 0,
};

export const AUGMENT_PRESETS: Record<AugmentPreset, AugmentSpec> = {
  none: NO_AUGMENT,
  report: { ...NO_AUGMENT, flip: 0.5, affine: 0.5, rotateDegrees: 30, brightness: 0.5, brightnessMagnitude: 0.2 },
  strong: {
    flip: 0.5,
    transpose: 0.5,
    affine: 0.7,
    rotateDegrees: 45,
    shift: 0.1,
    scale: 0.15,
    brightness: 0.7,
    brightnessMagnitude: 0.2,
    contrast: 0.7,
    contrastMagnitude: 0.2,
    saturation: 0.5,
    saturationMagnitude: 0.3,
    hue: 0.5,
    hueMagnitude: 0.03,
    cutout: 0.5,
    cutoutSize: 0.25,
  },
};

/** Magnitude limits of each augmentation field (probabilities are all in [0, 1]). */
const AUGMENT_LIMITS: Partial<Record<keyof AugmentSpec, number>> = {
  rotateDegrees: 180,
  shift: 0.5,
  scale: 0.9,
  brightnessMagnitude: 1,
  contrastMagnitude: 1,
  saturationMagnitude: 1,
  hueMagnitude: 0.5,
  cutoutSize: 1,
};

export function resolveAugment(value: unknown): AugmentSpec {
  const presets = Object.keys(AUGMENT_PRESETS) as AugmentPreset[];
  if (typeof value === 'string') return { ...AUGMENT_PRESETS[expectChoice('augment', value, presets)] };
  if (typeof value !== 'object' || value === null)
    throw new TypeError(`Expected one of ${presets.join(', ')} or an object for augment but received ${describe(value)}`);
  const { preset = 'none', ...fields } = value as { preset?: unknown } & Record<string, unknown>;
  const spec: AugmentSpec = { ...AUGMENT_PRESETS[expectChoice('augment.preset', preset, presets)] };
  refuseUnknownOptions(fields, Object.keys(NO_AUGMENT), { kind: 'augment option' });
  for (const [key, v] of Object.entries(fields)) {
    const name = key as keyof AugmentSpec;
    spec[name] = expectNumber(`augment.${key}`, v, 0, AUGMENT_LIMITS[name] ?? 1);
  }
  return spec;
}

export type ResolvedOptions = Required<Omit<TrainerOptions, 'posWeight' | 'device' | 'precision' | 'headDropout' | 'channelsLast' | 'cudaGraph' | 'augment' | 'imageSizes'>> & {
  imageSizes: ImageSizeStage[] | null;
  augment: AugmentSpec;
  posWeight: number | 'auto';
  device: Device;
  precision: Precision;
  headDropout: number | null;
  channelsLast: boolean;
  cudaGraph: boolean;
};

export const DEFAULT_OPTIONS = {
  model: 'efficientnet-b0' as ModelName,
  imageSize: 256,
  batchSize: 8,
  lr: 1e-3,
  epochs: 3,
  weightDecay: 0,
  posWeight: 'auto' as const,
  labelSmoothing: 0,
  accumulate: 1,
  device: 'auto' as const,
  precision: 'auto' as const,
  seed: 42,
  workers: Math.max(1, os.cpus().length),
  decode: 'sharp' as DecodeBackend,
  prefetch: 2,
  headHidden: 0,
  metadata: false,
  patientContext: 0,
  patientRunLength: 0,
  headDropout: null,
  dropPathRate: 0.2,
  widthFactor: 1,
  stageLimit: 7,
  freezeBatchNorm: false,
  augment: 'none' as AugmentPreset,
  schedule: 'constant' as ScheduleName,
  warmupEpochs: 0,
  minLr: 0,
  stepEpochs: 1,
  lrDecay: 0.1,
  plateauPatience: 1,
  earlyStopping: 0,
  imageSizes: null,
  pretrained: null as string | null,
  freezeBackboneEpochs: 0,
  backboneLrFactor: 1,
  padding: 'symmetric' as 'symmetric' | 'same',
  bnEps: null as number | null,
  bnMomentum: null as number | null,
};

const OPTION_NAMES = [...Object.keys(DEFAULT_OPTIONS), 'channelsLast', 'cudaGraph'];

export function describe(value: unknown): string {
  // Arrays and objects as JSON: String([]) is '' and String({}) says nothing.
  if (Array.isArray(value) || (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype)) {
    let json: string;
    try {
      json = JSON.stringify(value);
    } catch {
      json = Array.isArray(value) ? '[...]' : '{...}'; // circular, or holds a BigInt
    }
    return `${json.length > 80 ? `${json.slice(0, 77)}...` : json} (${Array.isArray(value) ? 'an array' : 'an object'})`;
  }
  return `${typeof value === 'string' ? `'${value}'` : String(value)} of type ${typeof value}`;
}

/** An integer option in [min, max], or the sharp-style TypeError/RangeError naming it. */
export function expectInteger(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') throw new TypeError(`Expected integer between ${min} and ${max} for ${name} but received ${describe(value)}`);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new RangeError(`Expected integer between ${min} and ${max} for ${name} but received ${describe(value)}`);
  return value;
}

/** A side in pixels the engine trains or scores at (the option, a progressive stage, a scoring call). */
export function expectImageSize(name: string, value: unknown): number {
  return expectInteger(name, value, 32, 2048);
}

export function expectNumber(name: string, value: unknown, min: number, max: number, { exclusiveMin = false } = {}): number {
  const range = `${exclusiveMin ? '(' : '['}${min}, ${max}]`;
  if (typeof value !== 'number') throw new TypeError(`Expected number in ${range} for ${name} but received ${describe(value)}`);
  if (!Number.isFinite(value) || value < min || value > max || (exclusiveMin && value === min))
    throw new RangeError(`Expected number in ${range} for ${name} but received ${describe(value)}`);
  return value;
}

function expectChoice<T extends string>(name: string, value: unknown, choices: readonly T[]): T {
  if (typeof value !== 'string' || !choices.includes(value as T))
    throw new (typeof value === 'string' ? RangeError : TypeError)(`Expected one of ${choices.join(', ')} for ${name} but received ${describe(value)}`);
  return value as T;
}

function expectBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new TypeError(`Expected boolean for ${name} but received ${describe(value)}`);
  return value;
}

/** What the machine offers, asked of the engine lazily (only when 'auto' needs it). */
export interface DeviceProbe {
  cudaAvailable(): boolean;
  /** Whether the engine has CUDA graphs (torchInfo().cudaGraphs); absent = no. */
  cudaGraphs?(): boolean;
  /** Whether the engine decodes JPEGs on the GPU (torchInfo().nvjpeg); absent = no. */
  nvjpeg?(): boolean;
}

/** The probe of the engine addon itself (it loads the addon only when 'auto' asks). */
export const ENGINE_PROBE: DeviceProbe = {
  cudaAvailable: () => torchInfo().cudaAvailable,
  cudaGraphs: () => torchInfo().cudaGraphs,
  nvjpeg: () => torchInfo().nvjpeg,
};

/**
 * Validates user options and fills in the defaults. Throws TypeError (wrong type, unknown option)
 * or RangeError (bad value) with a message naming the option.
 */
/**
 * Resolves and checks options. `stored`: options a run stored earlier (a checkpoint's header, a
 * cv folder's config.json), which keep the meaning they had when they were written: progressive
 * stages may run past the epochs, and stages without epochs take the default, as they did.
 */
export function resolveOptions(options: TrainerOptions, probe: DeviceProbe, { stored = false }: { stored?: boolean } = {}): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError(`Expected an options object but received ${describe(options)}`);
  refuseUnknownOptions(options, OPTION_NAMES);
  const o = { ...DEFAULT_OPTIONS, ...stripUndefined(options) };
  const model = o.model as unknown;
  if (typeof model !== 'string' || !isModelName(model)) expectChoice('model', model, MODEL_NAMES);

  let device = expectChoice('device', o.device, ['auto', 'cpu', 'cuda'] as const);
  if (device === 'auto') device = probe.cudaAvailable() ? 'cuda' : 'cpu';
  // Asked here, not left to Engine.create, so a run refuses before it opens any data.
  else if (device === 'cuda' && !probe.cudaAvailable())
    throw new RangeError(
      "Expected 'cpu' or 'auto' for device but received 'cuda': this engine's LibTorch sees no CUDA device (torchInfo().cudaAvailable is false); use --device cpu (a run being resumed keeps its device: resume it where a GPU is seen, or score its checkpoints here with predict --device cpu), or build the engine against a CUDA LibTorch (npm run build:engine with Torch_DIR/CMAKE_PREFIX_PATH set)",
    );
  let precision = expectChoice('precision', o.precision, ['auto', 'fp32', 'bf16', 'fp16'] as const);
  if (precision === 'auto') precision = device === 'cuda' ? 'bf16' : 'fp32';
  if (device === 'cpu' && precision !== 'fp32')
    throw new RangeError(`Expected precision fp32 with device cpu but received '${precision}': mixed precision (bf16/fp16) needs --device cuda`);

  const posWeight = o.posWeight === 'auto' ? 'auto' : expectNumber('posWeight', o.posWeight, 0, 1e6, { exclusiveMin: true });
  const patientRunLength = expectInteger('patientRunLength', o.patientRunLength, 0, 4096);
  if (patientRunLength > 0 && o.patientContext === 0)
    throw new RangeError(`Expected patientRunLength only with patientContext (it shapes the patient runs of training batches) but received ${patientRunLength} without it`);
  const headDropout = o.headDropout === null ? null : expectNumber('headDropout', o.headDropout, 0, 0.99);
  // Progressive resizing: the stages give the sizes (an imageSize beside them would go unused) and,
  // by default, the epochs; fewer epochs than the stages take would drop stages silently.
  const imageSizes = resolveImageSizes(o.imageSizes);
  const stageEpochs = imageSizes ? progressiveEpochs(imageSizes) : 0;
  if (imageSizes && !stored && options.imageSize !== undefined)
    throw new RangeError(
      `Expected imageSize (--image-size) or imageSizes (--progressive), not both, but received imageSize ${describe(options.imageSize)} beside ${imageSizes.length} stage(s): with stages, each stage trains at its own size and scoring uses the last one's`,
    );
  const epochs = expectInteger('epochs', imageSizes && !stored && options.epochs === undefined ? stageEpochs : o.epochs, 1, 100000);
  if (imageSizes && !stored && epochs < stageEpochs)
    throw new RangeError(
      `Expected integer >= ${stageEpochs} for epochs (the progressive stages (imageSizes) ${imageSizes.map((s) => `${s.size}:${s.epochs}`).join(',')} take ${stageEpochs} epochs) but received ${epochs}: give more epochs, or leave out the stages that are not to be trained`,
    );
  const lr = expectNumber('lr', o.lr, 0, 10, { exclusiveMin: true });
  const minLr = expectNumber('minLr', o.minLr, 0, 10);
  const padding = expectChoice('padding', o.padding, ['symmetric', 'same'] as const);
  const cudaGraphsBuilt = probe.cudaGraphs?.() ?? false;
  const cudaGraph = options.cudaGraph === undefined ? device === 'cuda' && cudaGraphsBuilt : expectBoolean('cudaGraph', options.cudaGraph);
  if (cudaGraph && device !== 'cuda')
    throw new RangeError(`Expected cudaGraph false with device ${device} but received true: CUDA graphs need --device cuda (drop --cuda-graph)`);
  if (cudaGraph && !cudaGraphsBuilt)
    throw new RangeError('Expected cudaGraph false but received true: this engine was built without CUDA graphs (they need a CUDA LibTorch >= 2.4); use --no-cuda-graph or rebuild the engine against such a LibTorch');
  const decode = expectChoice('decode', o.decode, DECODE_BACKENDS);
  if (decode === 'nvjpeg' && device !== 'cuda')
    throw new RangeError(`Expected decode 'sharp' with device ${device} but received 'nvjpeg': nvJPEG decodes on the GPU, so it needs --device cuda`);
  if (decode === 'nvjpeg' && !(probe.nvjpeg?.() ?? false))
    throw new RangeError("Expected decode 'sharp' but received 'nvjpeg': this engine was built without nvJPEG (CMake found no CUDA::nvjpeg); decode with sharp, or rebuild the engine where the CUDA toolkit has nvjpeg");
  if (minLr > lr) throw new RangeError(`Expected minLr <= lr (${lr}) but received ${describe(minLr)}: the cosine schedule decays from lr down to minLr`);
  return {
    model: model as ModelName,
    imageSize: expectImageSize('imageSize', o.imageSize),
    batchSize: expectInteger('batchSize', o.batchSize, 1, 4096),
    lr,
    epochs,
    weightDecay: expectNumber('weightDecay', o.weightDecay, 0, 1),
    posWeight,
    labelSmoothing: expectNumber('labelSmoothing', o.labelSmoothing, 0, 0.5),
    accumulate: expectInteger('accumulate', o.accumulate, 1, 1024),
    device,
    precision,
    seed: expectInteger('seed', o.seed, 0, 2 ** 32 - 1),
    workers: expectInteger('workers', o.workers, 1, 256),
    decode,
    prefetch: expectInteger('prefetch', o.prefetch, 0, 64),
    headHidden: expectInteger('headHidden', o.headHidden, 0, 65536),
    metadata: expectBoolean('metadata', o.metadata),
    patientContext: expectInteger('patientContext', o.patientContext, 0, 4096),
    patientRunLength,
    headDropout,
    dropPathRate: expectNumber('dropPathRate', o.dropPathRate, 0, 0.9),
    widthFactor: expectNumber('widthFactor', o.widthFactor, 0.05, 4, { exclusiveMin: false }),
    stageLimit: expectInteger('stageLimit', o.stageLimit, 1, 7),
    freezeBatchNorm: expectBoolean('freezeBatchNorm', o.freezeBatchNorm),
    augment: resolveAugment(o.augment),
    channelsLast: options.channelsLast === undefined ? device === 'cuda' : expectBoolean('channelsLast', options.channelsLast),
    cudaGraph,
    schedule: expectChoice('schedule', o.schedule, SCHEDULE_NAMES),
    warmupEpochs: expectNumber('warmupEpochs', o.warmupEpochs, 0, epochs),
    minLr,
    stepEpochs: expectNumber('stepEpochs', o.stepEpochs, 0, 100000, { exclusiveMin: true }),
    lrDecay: expectNumber('lrDecay', o.lrDecay, 0, 1, { exclusiveMin: true }),
    plateauPatience: expectInteger('plateauPatience', o.plateauPatience, 1, 100000),
    earlyStopping: expectInteger('earlyStopping', o.earlyStopping, 0, 100000),
    imageSizes,
    pretrained: o.pretrained === null ? null : expectNonEmptyString('pretrained', o.pretrained),
    freezeBackboneEpochs: expectInteger('freezeBackboneEpochs', o.freezeBackboneEpochs, 0, epochs),
    backboneLrFactor: expectNumber('backboneLrFactor', o.backboneLrFactor, 0, 1),
    padding,
    bnEps: o.bnEps === null ? (padding === 'same' ? 1e-3 : 1e-5) : expectNumber('bnEps', o.bnEps, 0, 1, { exclusiveMin: true }),
    bnMomentum: o.bnMomentum === null ? (padding === 'same' ? 0.01 : 0.1) : expectNumber('bnMomentum', o.bnMomentum, 0, 1, { exclusiveMin: true }),
  };
}

function expectNonEmptyString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.trim() === '') throw new TypeError(`Expected a non-empty string for ${name} but received ${describe(value)}`);
  return value;
}

/** Progressive-resizing stages: a non-empty array of { size in 32..2048, epochs >= 1 }, or null. */
function resolveImageSizes(value: unknown): ImageSizeStage[] | null {
  if (value === null) return null;
  const shape = 'an array of stages such as [{ size: 128, epochs: 2 }, { size: 256, epochs: 3 }] for imageSizes';
  if (!Array.isArray(value) || value.length === 0) throw new TypeError(`Expected ${shape} but received ${describe(value)}`);
  return value.map((stage: unknown, i) => {
    const keys = typeof stage === 'object' && stage !== null && !Array.isArray(stage) ? Object.keys(stage).sort().join(',') : '';
    if (keys !== 'epochs,size') throw new TypeError(`Expected ${shape} but imageSizes[${i}] is ${JSON.stringify(stage)}`);
    const { size, epochs } = stage as ImageSizeStage;
    return { size: expectImageSize(`imageSizes[${i}].size`, size), epochs: expectInteger(`imageSizes[${i}].epochs`, epochs, 1, 100000) };
  });
}

export function stripUndefined<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function architectureOptions(o: ResolvedOptions): ArchitectureOptions {
  return {
    widthFactor: o.widthFactor,
    stageLimit: o.stageLimit,
    headHidden: o.headHidden,
    metadataFeatures: o.metadata ? METADATA_FEATURES.length : 0,
    metadataHidden: METADATA_HIDDEN,
    contextDim: o.patientContext,
    headDropout: o.headDropout ?? undefined,
    dropPathRate: o.dropPathRate,
    padding: o.padding,
    bnEps: o.bnEps,
    bnMomentum: o.bnMomentum,
  };
}

/** The plain object the engine is built from; posWeight is resolved by then (from the data). */
export function engineConfig(o: ResolvedOptions, posWeight: number): EngineConfig {
  return {
    model: buildModelSpec(o.model, architectureOptions(o)),
    device: o.device,
    precision: o.precision,
    seed: o.seed,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: o.weightDecay,
    posWeight,
    labelSmoothing: o.labelSmoothing,
    accumulateSteps: o.accumulate,
    freezeBatchNorm: o.freezeBatchNorm,
    channelsLast: o.channelsLast,
    cudaGraph: o.cudaGraph,
    nvjpeg: o.decode === 'nvjpeg',
    augment: o.augment,
  };
}
