/**
 * EfficientNet B0-B7 as data: the B0 stage table and the compound scaling rules
 * (../shared/reference/efficientnet.md, timm's `_gen_efficientnet`). The engine builds exactly
 * the ModelSpec produced here.
 */
import type { ModelSpec, StageSpec } from '../native';

export const MODEL_NAMES = [
  'efficientnet-b0',
  'efficientnet-b1',
  'efficientnet-b2',
  'efficientnet-b3',
  'efficientnet-b4',
  'efficientnet-b5',
  'efficientnet-b6',
  'efficientnet-b7',
] as const;
export type ModelName = (typeof MODEL_NAMES)[number];

export interface Scaling {
  width: number;
  depth: number;
  /** The resolution the variant was designed for (ImageNet). */
  resolution: number;
  /** Dropout before the classifier. */
  dropout: number;
}

export const SCALING: Record<ModelName, Scaling> = {
  'efficientnet-b0': { width: 1.0, depth: 1.0, resolution: 224, dropout: 0.2 },
  'efficientnet-b1': { width: 1.0, depth: 1.1, resolution: 240, dropout: 0.2 },
  'efficientnet-b2': { width: 1.1, depth: 1.2, resolution: 260, dropout: 0.3 },
  'efficientnet-b3': { width: 1.2, depth: 1.4, resolution: 300, dropout: 0.3 },
  'efficientnet-b4': { width: 1.4, depth: 1.8, resolution: 380, dropout: 0.4 },
  'efficientnet-b5': { width: 1.6, depth: 2.2, resolution: 456, dropout: 0.4 },
  'efficientnet-b6': { width: 1.8, depth: 2.6, resolution: 528, dropout: 0.5 },
  'efficientnet-b7': { width: 2.0, depth: 3.1, resolution: 600, dropout: 0.5 },
};

/** B0's stages: repeats, kernel, stride, expand ratio, output channels (input follows). */
const B0_STAGES: readonly StageSpec[] = [
  { repeats: 1, kernel: 3, stride: 1, expandRatio: 1, outChannels: 16 },
  { repeats: 2, kernel: 3, stride: 2, expandRatio: 6, outChannels: 24 },
  { repeats: 2, kernel: 5, stride: 2, expandRatio: 6, outChannels: 40 },
  { repeats: 3, kernel: 3, stride: 2, expandRatio: 6, outChannels: 80 },
  { repeats: 3, kernel: 5, stride: 1, expandRatio: 6, outChannels: 112 },
  { repeats: 4, kernel: 5, stride: 2, expandRatio: 6, outChannels: 192 },
  { repeats: 1, kernel: 3, stride: 1, expandRatio: 6, outChannels: 320 },
];
const B0_STEM = 32;
const B0_HEAD = 1280;
const SE_RATIO = 0.25;
const DROP_PATH_RATE = 0.2;

/** Channels scaled by width, rounded to a multiple of 8, never below 90% of the exact value. */
export function roundChannels(channels: number, width: number, divisor = 8): number {
  const scaled = channels * width;
  let rounded = Math.max(divisor, Math.floor((scaled + divisor / 2) / divisor) * divisor);
  if (rounded < 0.9 * scaled) rounded += divisor;
  return rounded;
}

/** Repeats scaled by depth, rounded up (timm's depth_trunc='ceil'). */
export function roundRepeats(repeats: number, depth: number): number {
  return Math.ceil(depth * repeats);
}

export interface ArchitectureOptions {
  /** Multiplies every channel count after scaling; < 1 gives the tiny models tests and the demo use. */
  widthFactor?: number;
  /** Keep only the first N stages (tiny test models); default all seven. */
  stageLimit?: number;
  /** Hidden dense layer width in the head; 0 = a direct Linear(features, 1) as in the report. */
  headHidden?: number;
  /** Metadata values per image for a metadata branch (0 = images only), and its width. */
  metadataFeatures?: number;
  metadataHidden?: number;
  /** Patient-context attention width (0 = none). */
  contextDim?: number;
  /** Head dropout; default: the variant's own (0.2 for b0 ... 0.5 for b7). */
  headDropout?: number;
  dropPathRate?: number;
  padding?: 'symmetric' | 'same';
  bnEps?: number;
  bnMomentum?: number;
}

export function isModelName(name: string): name is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(name);
}

/** The fully resolved architecture of a variant. */
export function buildModelSpec(name: ModelName, options: ArchitectureOptions = {}): ModelSpec {
  const scaling = SCALING[name];
  const width = scaling.width * (options.widthFactor ?? 1);
  const stages = B0_STAGES.slice(0, options.stageLimit ?? B0_STAGES.length).map((stage) => ({
    ...stage,
    repeats: roundRepeats(stage.repeats, scaling.depth),
    outChannels: roundChannels(stage.outChannels, width),
  }));
  return {
    stemChannels: roundChannels(B0_STEM, width),
    stages,
    headChannels: roundChannels(B0_HEAD, width),
    seRatio: SE_RATIO,
    dropPathRate: options.dropPathRate ?? DROP_PATH_RATE,
    headHidden: options.headHidden ?? 0,
    metadataFeatures: options.metadataFeatures ?? 0,
    metadataHidden: options.metadataFeatures ? (options.metadataHidden ?? 32) : 0,
    contextDim: options.contextDim ?? 0,
    headDropout: options.headDropout ?? scaling.dropout,
    bnEps: options.bnEps ?? (options.padding === 'same' ? 1e-3 : 1e-5),
    bnMomentum: options.bnMomentum ?? (options.padding === 'same' ? 0.01 : 0.1),
    padding: options.padding ?? 'symmetric',
  };
}

/**
 * Parameter count computed from the spec alone (no engine): lets a test compare the engine's
 * real count with an independent sum, and the CLI print the size before building anything.
 */
export function countParameters(spec: ModelSpec): number {
  const bn = (c: number) => 2 * c;
  let total = 3 * spec.stemChannels * 9 + bn(spec.stemChannels);
  let input = spec.stemChannels;
  for (const stage of spec.stages) {
    for (let r = 0; r < stage.repeats; r++) {
      const mid = Math.round(input * stage.expandRatio);
      const reduced = Math.max(1, Math.floor(input * spec.seRatio));
      if (stage.expandRatio !== 1) total += input * mid + bn(mid);
      total += mid * stage.kernel * stage.kernel + bn(mid);
      total += mid * reduced + reduced + reduced * mid + mid; // SE convs have biases
      total += mid * stage.outChannels + bn(stage.outChannels);
      input = stage.outChannels;
    }
  }
  total += input * spec.headChannels + bn(spec.headChannels);
  let features = spec.headChannels;
  if (spec.metadataFeatures > 0) {
    // Two Linear layers with biases; their output joins the pooled image features.
    total += spec.metadataFeatures * spec.metadataHidden + spec.metadataHidden + spec.metadataHidden * spec.metadataHidden + spec.metadataHidden;
    features += spec.metadataHidden;
  }
  if (spec.contextDim > 0) {
    // Query, key and value projections of the pooled features; the context and a has-others flag join the head.
    total += 3 * (spec.headChannels * spec.contextDim + spec.contextDim);
    features += spec.contextDim + 1;
  }
  if (spec.headHidden > 0) {
    total += features * spec.headHidden + spec.headHidden;
    features = spec.headHidden;
  }
  return total + features + 1;
}
