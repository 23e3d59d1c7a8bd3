/**
 * The three EfficientNet weight layouts users hold, as maps from the engine's (timm's) module
 * names to each layout's names, and the shapes the engine expects for a ModelSpec. Parameter
 * suffixes (weight, bias, running_mean, running_var, num_batches_tracked) are the same in all
 * three, so only module prefixes are mapped.
 *
 * | engine (= timm)               | torchvision                    | lukemelas                 |
 * | conv_stem / bn1               | features.0.0 / features.0.1    | _conv_stem / _bn0         |
 * | blocks.s.i.conv_pw / bn1      | features.{s+1}.{i}.block.0.0/.1| _blocks.{k}._expand_conv / _bn0 |
 * | blocks.s.i.conv_dw / bn2      | ...block.1.0 / .1.1            | _depthwise_conv / _bn1    |
 * | blocks.s.i.se.conv_reduce/expand | ...block.2.fc1 / .2.fc2     | _se_reduce / _se_expand   |
 * | blocks.s.i.conv_pwl / bn3     | ...block.3.0 / .3.1            | _project_conv / _bn2      |
 * | conv_head / bn2               | features.8.0 / features.8.1    | _conv_head / _bn1         |
 * | classifier                    | classifier.1                   | _fc                       |
 * Blocks without expansion (the first stage) lack the first pair and shift the rest down
 * (engine: conv_dw, bn1, se.*, conv_pw, bn2). k is the block's index in the whole network.
 */
import type { ModelSpec } from '../../native';
import { MODEL_NAMES, ModelName, buildModelSpec } from '../architectures';

export const LAYOUTS = ['lukemelas', 'torchvision', 'timm'] as const;
export type Layout = (typeof LAYOUTS)[number];

export interface BlockPosition {
  stage: number;
  index: number;
  /** Index in the whole network (lukemelas numbers blocks this way). */
  global: number;
  expands: boolean;
  in: number;
  mid: number;
  out: number;
  reduced: number;
  kernel: number;
}

export function blockPositions(spec: ModelSpec): BlockPosition[] {
  const blocks: BlockPosition[] = [];
  let input = spec.stemChannels;
  spec.stages.forEach((stage, s) => {
    for (let i = 0; i < stage.repeats; i++) {
      blocks.push({
        stage: s,
        index: i,
        global: blocks.length,
        expands: stage.expandRatio !== 1,
        in: input,
        mid: Math.round(input * stage.expandRatio),
        out: stage.outChannels,
        reduced: Math.max(1, Math.floor(input * spec.seRatio)),
        kernel: stage.kernel,
      });
      input = stage.outChannels;
    }
  });
  return blocks;
}

export type ModuleKind = 'conv' | 'conv_bias' | 'bn' | 'linear';

export interface EngineModule {
  /** Engine (timm) module name. */
  name: string;
  kind: ModuleKind;
  /** Weight shape; bias / BN vectors have length shape[0]. */
  shape: number[];
  /** Part of the classification head (fresh when fine-tuning), not of the backbone. */
  head: boolean;
}

/** Every module of the engine's model for a spec, in the order the engine builds them. */
export function engineModules(spec: ModelSpec): EngineModule[] {
  const modules: EngineModule[] = [
    { name: 'conv_stem', kind: 'conv', shape: [spec.stemChannels, 3, 3, 3], head: false },
    { name: 'bn1', kind: 'bn', shape: [spec.stemChannels], head: false },
  ];
  let last = spec.stemChannels;
  for (const b of blockPositions(spec)) {
    const p = `blocks.${b.stage}.${b.index}`;
    const width = b.expands ? b.mid : b.in;
    if (b.expands) {
      modules.push({ name: `${p}.conv_pw`, kind: 'conv', shape: [b.mid, b.in, 1, 1], head: false });
      modules.push({ name: `${p}.bn1`, kind: 'bn', shape: [b.mid], head: false });
    }
    modules.push({ name: `${p}.conv_dw`, kind: 'conv', shape: [width, 1, b.kernel, b.kernel], head: false });
    modules.push({ name: `${p}.${b.expands ? 'bn2' : 'bn1'}`, kind: 'bn', shape: [width], head: false });
    modules.push({ name: `${p}.se.conv_reduce`, kind: 'conv_bias', shape: [b.reduced, width, 1, 1], head: false });
    modules.push({ name: `${p}.se.conv_expand`, kind: 'conv_bias', shape: [width, b.reduced, 1, 1], head: false });
    modules.push({ name: `${p}.${b.expands ? 'conv_pwl' : 'conv_pw'}`, kind: 'conv', shape: [b.out, width, 1, 1], head: false });
    modules.push({ name: `${p}.${b.expands ? 'bn3' : 'bn2'}`, kind: 'bn', shape: [b.out], head: false });
    last = b.out;
  }
  modules.push({ name: 'conv_head', kind: 'conv', shape: [spec.headChannels, last, 1, 1], head: false });
  modules.push({ name: 'bn2', kind: 'bn', shape: [spec.headChannels], head: false });
  let features = spec.headChannels;
  if (spec.headHidden > 0) {
    modules.push({ name: 'head_fc', kind: 'linear', shape: [spec.headHidden, features], head: true });
    features = spec.headHidden;
  }
  modules.push({ name: 'classifier', kind: 'linear', shape: [1, features], head: true });
  return modules;
}

export interface EngineTensorShape {
  name: string;
  module: string;
  shape: number[];
  /** 'I64' for BatchNorm's num_batches_tracked, else 'F32'. */
  dtype: 'F32' | 'I64';
  head: boolean;
}

/** The engine's tensors (parameters and buffers) for a spec, with their shapes. */
export function engineTensors(spec: ModelSpec): EngineTensorShape[] {
  const tensors: EngineTensorShape[] = [];
  for (const m of engineModules(spec)) {
    const add = (suffix: string, shape: number[], dtype: 'F32' | 'I64' = 'F32') =>
      tensors.push({ name: `${m.name}.${suffix}`, module: m.name, shape, dtype, head: m.head });
    if (m.kind === 'bn') {
      for (const s of ['weight', 'bias', 'running_mean', 'running_var']) add(s, m.shape);
      add('num_batches_tracked', [], 'I64');
    } else {
      add('weight', m.shape);
      if (m.kind !== 'conv') add('bias', [m.shape[0]]);
    }
  }
  return tensors;
}

/** The source layout's module name for an engine module (null: the layout has no such module). */
export function sourceModuleName(layout: Layout, engineModule: string, spec: ModelSpec): string {
  if (layout === 'timm') return engineModule;
  const headIndex = spec.stages.length + 1;
  const top: Record<string, [string, string]> = {
    conv_stem: ['_conv_stem', 'features.0.0'],
    bn1: ['_bn0', 'features.0.1'],
    conv_head: ['_conv_head', `features.${headIndex}.0`],
    bn2: ['_bn1', `features.${headIndex}.1`],
    classifier: ['_fc', 'classifier.1'],
    head_fc: ['_head_fc', 'head_fc'],
  };
  if (top[engineModule]) return top[engineModule][layout === 'lukemelas' ? 0 : 1];
  const match = /^blocks\.(\d+)\.(\d+)\.(.+)$/.exec(engineModule);
  if (!match) throw new Error(`unknown engine module ${engineModule}`);
  const [stage, index, part] = [Number(match[1]), Number(match[2]), match[3]];
  let global = index;
  for (let s = 0; s < stage; s++) global += spec.stages[s].repeats;
  const expands = spec.stages[stage].expandRatio !== 1;
  if (layout === 'lukemelas') {
    const names: Record<string, string> = expands
      ? { conv_pw: '_expand_conv', bn1: '_bn0', conv_dw: '_depthwise_conv', bn2: '_bn1', 'se.conv_reduce': '_se_reduce', 'se.conv_expand': '_se_expand', conv_pwl: '_project_conv', bn3: '_bn2' }
      : { conv_dw: '_depthwise_conv', bn1: '_bn1', 'se.conv_reduce': '_se_reduce', 'se.conv_expand': '_se_expand', conv_pw: '_project_conv', bn2: '_bn2' };
    return `_blocks.${global}.${names[part]}`;
  }
  const names: Record<string, string> = expands
    ? { conv_pw: '0.0', bn1: '0.1', conv_dw: '1.0', bn2: '1.1', 'se.conv_reduce': '2.fc1', 'se.conv_expand': '2.fc2', conv_pwl: '3.0', bn3: '3.1' }
    : { conv_dw: '0.0', bn1: '0.1', 'se.conv_reduce': '1.fc1', 'se.conv_expand': '1.fc2', conv_pw: '2.0', bn2: '2.1' };
  return `features.${stage + 1}.${index}.block.${names[part]}`;
}

/** The key each layout's stem convolution has: how a layout is recognised. */
export const LAYOUT_SIGNATURES: Record<Layout, string> = {
  lukemelas: '_conv_stem.weight',
  torchvision: 'features.0.0.weight',
  timm: 'conv_stem.weight',
};

/** The source keys of the classification head of each layout. */
export const HEAD_MODULES: Record<Layout, string> = { lukemelas: '_fc', torchvision: 'classifier.1', timm: 'classifier' };

export function detectLayout(keys: ReadonlySet<string>): Layout | null {
  const found = LAYOUTS.filter((layout) => keys.has(LAYOUT_SIGNATURES[layout]));
  return found.length === 1 ? found[0] : null;
}

export interface Candidate {
  model: ModelName;
  widthFactor: number;
}

/** Width factors tried when the file's width is not given: the real networks, then the small test models. */
export const DETECTED_WIDTH_FACTORS = [1, 0.5, 0.25];

export function candidates(model?: ModelName, widthFactor?: number): Candidate[] {
  const out: Candidate[] = [];
  for (const w of widthFactor !== undefined ? [widthFactor] : DETECTED_WIDTH_FACTORS)
    for (const m of model ? [model] : MODEL_NAMES) out.push({ model: m, widthFactor: w });
  return out;
}

export function candidateSpec(c: Candidate, padding: 'symmetric' | 'same' = 'symmetric'): ModelSpec {
  return buildModelSpec(c.model, { widthFactor: c.widthFactor, padding });
}

export function describeCandidate(c: Candidate): string {
  return `${c.model}${c.widthFactor !== 1 ? ` (width factor ${c.widthFactor})` : ''}`;
}
