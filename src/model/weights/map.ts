/**
 * From a file's state dict to the engine's tensors: recognise the layout, find the EfficientNet
 * variant (b0-b7, width) whose every backbone shape the file matches, check dtypes, convert to
 * F32, and decide about the classification head (a 1-output head is kept, an ImageNet head of
 * 1000 classes is dropped with a note).
 */
import type { NamedTensor } from '../../native';
import type { ModelName } from '../architectures';
import { WeightsError } from './errors';
import {
  Candidate,
  EngineTensorShape,
  HEAD_MODULES,
  LAYOUT_SIGNATURES,
  LAYOUTS,
  Layout,
  candidateSpec,
  candidates,
  describeCandidate,
  detectLayout,
  engineTensors,
  sourceModuleName,
} from './layouts';
import { toF32 } from './read';
import { FLOAT_DTYPES, SourceTensor } from './torch-file';

export interface DroppedTensor {
  key: string;
  shape: number[];
  reason: string;
}

export interface MappedWeights {
  layout: Layout;
  candidate: Candidate;
  /** Engine names; F32 (num_batches_tracked I64). */
  tensors: NamedTensor[];
  /** Whether a 1-output head was found and kept as the engine's classifier. */
  headKept: boolean;
  dropped: DroppedTensor[];
  notes: string[];
}

const MAX_LISTED = 10;

function listText(items: string[]): string {
  return items.slice(0, MAX_LISTED).join(', ') + (items.length > MAX_LISTED ? ` (+${items.length - MAX_LISTED} more)` : '');
}

const shapeText = (shape: readonly number[]) => `[${shape.join(', ')}]`;
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((v, i) => v === b[i]);

interface Fit {
  candidate: Candidate;
  expected: (EngineTensorShape & { source: string })[];
  missing: string[];
  mismatched: string[];
  unexpected: string[];
  matched: number;
}

function fitCandidate(candidate: Candidate, layout: Layout, byName: Map<string, SourceTensor>): Fit {
  const spec = candidateSpec(candidate);
  const expected = engineTensors(spec)
    .filter((t) => !t.head)
    .map((t) => ({ ...t, source: `${sourceModuleName(layout, t.module, spec)}${t.name.slice(t.module.length)}` }));
  const missing: string[] = [];
  const mismatched: string[] = [];
  let matched = 0;
  const used = new Set<string>();
  for (const t of expected) {
    const found = byName.get(t.source);
    if (found) used.add(t.source);
    if (t.dtype === 'I64') continue; // num_batches_tracked: optional (older files have none)
    if (!found) missing.push(t.source);
    else if (!sameShape(found.shape, t.shape)) mismatched.push(`${t.source} (file ${shapeText(found.shape)}, ${describeCandidate(candidate)} needs ${shapeText(t.shape)})`);
    else matched++;
  }
  const head = HEAD_MODULES[layout];
  const unexpected = [...byName.keys()].filter((k) => !used.has(k) && k !== `${head}.weight` && k !== `${head}.bias`);
  return { candidate, expected, missing, mismatched, unexpected, matched };
}

/** What the file holds, in words: stem and head widths and the number of blocks. */
export function describeFile(layout: Layout, byName: Map<string, SourceTensor>): string {
  const stem = byName.get(LAYOUT_SIGNATURES[layout])?.shape[0];
  const blockPattern = { lukemelas: /^_blocks\.(\d+)\./, torchvision: /^features\.(\d+\.\d+)\.block\./, timm: /^blocks\.(\d+\.\d+)\./ }[layout];
  const blocks = new Set([...byName.keys()].map((k) => blockPattern.exec(k)?.[1]).filter(Boolean)).size;
  const headKey = [...byName.keys()].find((k) => (layout === 'lukemelas' ? k === '_conv_head.weight' : layout === 'timm' ? k === 'conv_head.weight' : /^features\.\d+\.0\.weight$/.test(k) && byName.get(k)?.shape[2] === 1 && !k.includes('block')));
  const head = headKey ? byName.get(headKey)?.shape[0] : undefined;
  return `stem ${stem ?? '?'} channels, head ${head ?? '?'} channels, ${blocks} blocks`;
}

export interface MapOptions {
  format?: 'auto' | Layout;
  /** The architecture the caller expects; the file must hold exactly it. */
  model?: ModelName;
  widthFactor?: number;
}

export function mapToEngine(tensors: readonly SourceTensor[], source: string, options: MapOptions = {}): MappedWeights {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const keys = new Set(byName.keys());
  const notes: string[] = [];
  const detected = detectLayout(keys);
  const format = options.format ?? 'auto';
  let layout: Layout;
  if (format === 'auto') {
    if (!detected)
      throw new WeightsError(
        `${source}: its keys are none of the known EfficientNet layouts (${LAYOUTS.map((l) => `${l}: '${LAYOUT_SIGNATURES[l]}'`).join(', ')}); ` +
          `its first keys are ${listText([...keys].slice(0, 5))}. Only EfficientNet state dicts from lukemelas/efficientnet_pytorch, torchvision and timm are supported`,
        'ERR_WEIGHTS_LAYOUT',
      );
    layout = detected as Layout;
  } else {
    layout = format;
    if (!keys.has(LAYOUT_SIGNATURES[layout]))
      throw new WeightsError(
        `${source} is not in the ${layout} layout (it has no '${LAYOUT_SIGNATURES[layout]}')` +
          (detected ? `; its keys are in the ${detected} layout: pass --format ${detected} or --format auto` : `; its first keys are ${listText([...keys].slice(0, 5))}`),
        'ERR_WEIGHTS_LAYOUT',
      );
  }

  const restricted = candidates(options.model, options.widthFactor);
  let fit = restricted.map((c) => fitCandidate(c, layout, byName)).find((f) => f.missing.length + f.mismatched.length + f.unexpected.length === 0);
  if (!fit) {
    const shape = describeFile(layout, byName);
    if (options.model || options.widthFactor !== undefined) {
      const other = candidates()
        .map((c) => fitCandidate(c, layout, byName))
        .find((f) => f.missing.length + f.mismatched.length + f.unexpected.length === 0);
      if (other)
        throw new WeightsError(
          `${source} holds ${describeCandidate(other.candidate)} weights (${shape}), not ${options.model ?? 'efficientnet'}` +
            `${options.widthFactor !== undefined && options.widthFactor !== 1 ? ` at width factor ${options.widthFactor}` : ''}: ` +
            `the architecture follows the weights: leave out --model, or import ${options.model ?? 'the intended'} weights instead`,
          'ERR_WEIGHTS_MISMATCH',
        );
    }
    const fits = restricted.map((c) => fitCandidate(c, layout, byName));
    const best = fits.reduce((a, b) => (b.matched - b.unexpected.length > a.matched - a.unexpected.length ? b : a));
    const problems = [
      best.missing.length ? `missing keys: ${listText(best.missing)}` : '',
      best.mismatched.length ? `shape mismatches: ${listText(best.mismatched)}` : '',
      best.unexpected.length ? `unexpected keys: ${listText(best.unexpected)}` : '',
    ].filter(Boolean);
    throw new WeightsError(
      `${source} (${layout} layout; ${shape}) does not fit ${options.model ? describeCandidate(best.candidate) : 'any EfficientNet b0-b7'}; ` +
        `closest is ${describeCandidate(best.candidate)}: ${problems.join('; ')}. ` +
        'Check that the file is an EfficientNet state dict from that project and was not modified or truncated',
      'ERR_WEIGHTS_MISMATCH',
    );
  }

  const out: NamedTensor[] = [];
  const converted = new Set<string>();
  let nbtFilled = 0;
  for (const t of fit.expected) {
    const found = byName.get(t.source);
    if (t.dtype === 'I64') {
      if (found && (found.dtype === 'I64' || found.dtype === 'I32') && found.shape.length === 0) {
        const value = found.dtype === 'I64' ? found.data.readBigInt64LE(0) : BigInt(found.data.readInt32LE(0));
        const data = Buffer.alloc(8);
        data.writeBigInt64LE(value);
        out.push({ name: t.name, dtype: 'I64', shape: [], data });
      } else {
        nbtFilled++;
        out.push({ name: t.name, dtype: 'I64', shape: [], data: Buffer.alloc(8) });
      }
      continue;
    }
    const tensor = found as SourceTensor;
    if (!FLOAT_DTYPES.includes(tensor.dtype))
      throw new WeightsError(
        `${source}: tensor '${t.source}' (the engine's ${t.name}) is ${tensor.dtype}, not floating point: weights must be F32, F16, BF16 or F64. ` +
          'The file holds integer (quantized?) weights; import the float checkpoint instead',
        'ERR_WEIGHTS_DTYPE',
      );
    if (tensor.dtype !== 'F32') converted.add(tensor.dtype);
    out.push({ name: t.name, dtype: 'F32', shape: [...t.shape], data: toF32(tensor) });
  }
  if (converted.size) notes.push(`converted ${[...converted].join('/')} weights to F32`);
  if (nbtFilled) notes.push(`${nbtFilled} BatchNorm num_batches_tracked counters absent from the file were set to 0 (unused: momentum is fixed)`);

  const dropped: DroppedTensor[] = [];
  let headKept = false;
  const headModule = HEAD_MODULES[layout];
  const headWeight = byName.get(`${headModule}.weight`);
  const headBias = byName.get(`${headModule}.bias`);
  const features = candidateSpec(fit.candidate).headChannels;
  if (headWeight) {
    const [classes, inputs] = headWeight.shape;
    if (headWeight.shape.length !== 2 || inputs !== features)
      throw new WeightsError(
        `${source}: head '${headModule}.weight' has shape ${shapeText(headWeight.shape)} but ${describeCandidate(fit.candidate)} has ${features} features ` +
          `(expected [classes, ${features}]): the file mixes parts of different models`,
        'ERR_WEIGHTS_MISMATCH',
      );
    if (!FLOAT_DTYPES.includes(headWeight.dtype) || (headBias && !FLOAT_DTYPES.includes(headBias.dtype)))
      throw new WeightsError(`${source}: head '${headModule}.weight' is ${headWeight.dtype}, not floating point`, 'ERR_WEIGHTS_DTYPE');
    if (classes === 1 && headBias && sameShape(headBias.shape, [1])) {
      headKept = true;
      out.push({ name: 'classifier.weight', dtype: 'F32', shape: [1, features], data: toF32(headWeight) });
      out.push({ name: 'classifier.bias', dtype: 'F32', shape: [1], data: toF32(headBias) });
      notes.push(`kept the file's 1-output head '${headModule}' as the engine's classifier`);
    } else {
      const reason = `${classes}-class classification head${classes === 1000 ? ' (ImageNet)' : ''}: the melanoma model has one output and starts with a fresh Linear(${features}, 1)`;
      dropped.push({ key: `${headModule}.weight`, shape: headWeight.shape, reason });
      if (headBias) dropped.push({ key: `${headModule}.bias`, shape: headBias.shape, reason });
      notes.push(`dropped the ${classes}-class head ${headModule}.weight ${shapeText(headWeight.shape)}${headBias ? ` and ${headModule}.bias ${shapeText(headBias.shape)}` : ''}: fine-tuning starts with a fresh 1-output head`);
    }
  } else if (headBias) {
    throw new WeightsError(`${source}: it has '${headModule}.bias' but no '${headModule}.weight': the state dict is incomplete`, 'ERR_WEIGHTS_MISMATCH');
  } else {
    notes.push('the file has no classification head (a feature extractor): fine-tuning starts with a fresh head');
  }
  return { layout, candidate: fit.candidate, tensors: out, headKept, dropped, notes };
}
