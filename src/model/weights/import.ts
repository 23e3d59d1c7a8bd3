/**
 * `importWeights(file)`: a lukemelas / torchvision / timm EfficientNet state dict (.pth, .pt,
 * .safetensors) -> weights/<name>.safetensors under the engine's names in F32, plus
 * weights/<name>.json describing the architecture the weights need. Nothing existing is
 * replaced without `force`.
 */
import { existsSync } from 'fs';
import * as path from 'path';
import { Engine, NativeLoadError, NamedTensor } from '../../native';
import { writeFileAtomic } from '../../files';
import { encodeSafetensors } from '../../train/safetensors';
import { ModelName, isModelName, MODEL_NAMES } from '../architectures';
import { engineConfig, resolveOptions } from '../config';
import { WeightsError } from './errors';
import { WEIGHTS_FORMAT, WEIGHTS_METADATA_KEY, WeightsInfo } from './info';
import { LAYOUTS, Layout, candidateSpec, engineTensors } from './layouts';
import { mapToEngine } from './map';
import { readWeightsFile } from './read';

export interface ImportWeightsOptions {
  /** 'auto' (default) recognises the layout from the keys. */
  format?: 'auto' | Layout;
  /** Output name: weights/<name>.safetensors + .json. Default: <model>-<layout>[-tf][-w<width>]. */
  name?: string;
  /** Default ./weights. */
  weightsDir?: string;
  /** Replace an existing import of the same name. */
  force?: boolean;
  /** The architecture the caller expects: the file must hold exactly it (default: whatever it holds). */
  model?: ModelName;
  /** Width factor of the file's model; default: detected (1, 0.5 or 0.25). */
  widthFactor?: number;
  /**
   * Padding the weights were trained with. Default: 'same' for lukemelas and timm `tf_*` files
   * (recognised by 'tf_' in the file's path), 'symmetric' for torchvision and other timm files.
   */
  padding?: 'symmetric' | 'same';
  /** Load the result into a real engine to check it (default true; skipped with a note when the engine is not built). */
  verifyWithEngine?: boolean;
}

export interface ImportWeightsResult {
  /** The written weights/<name>.safetensors. */
  file: string;
  /** The written weights/<name>.json. */
  sidecar: string;
  info: WeightsInfo;
}

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function validateWeightsName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name) || name.endsWith('.safetensors') || name.endsWith('.json'))
    throw new TypeError(
      `Expected a name of letters, digits, '.', '_' and '-' (no folder, no extension) for the weights but received ${JSON.stringify(name)}`,
    );
  return name;
}

/** Padding and BatchNorm settings the weights were trained with, and why. */
export function architectureFor(
  layout: Layout,
  model: ModelName,
  source: string,
  padding?: 'symmetric' | 'same',
): { padding: 'symmetric' | 'same'; bnEps: number; bnMomentum: number; reason: string } {
  const tf = { bnEps: 1e-3, bnMomentum: 0.01 };
  const pt = { bnEps: 1e-5, bnMomentum: 0.1 };
  if (padding) {
    const bn = layout === 'torchvision' && padding === 'symmetric' && /b[5-7]$/.test(model) ? tf : padding === 'same' ? tf : pt;
    return { padding, ...bn, reason: `padding '${padding}' given as an option` };
  }
  if (layout === 'lukemelas') return { padding: 'same', ...tf, reason: 'lukemelas weights are TensorFlow ports: TF SAME padding, BatchNorm eps 1e-3' };
  if (layout === 'torchvision')
    return /b[5-7]$/.test(model)
      ? { padding: 'symmetric', ...tf, reason: 'torchvision b5-b7: symmetric padding, BatchNorm eps 1e-3 / momentum 0.01' }
      : { padding: 'symmetric', ...pt, reason: 'torchvision b0-b4: symmetric padding, BatchNorm eps 1e-5' };
  return /(^|[^a-z0-9])tf_/i.test(path.resolve(source))
    ? { padding: 'same', ...tf, reason: "timm tf_* weights ('tf_' in the file path): TF SAME padding, BatchNorm eps 1e-3" }
    : {
        padding: 'symmetric',
        ...pt,
        reason: "timm efficientnet_* weights (no 'tf_' in the file path): symmetric padding, BatchNorm eps 1e-5; pass --padding same for tf_efficientnet_* files",
      };
}

function outputPaths(weightsDir: string, name: string) {
  return { file: path.join(weightsDir, `${name}.safetensors`), sidecar: path.join(weightsDir, `${name}.json`) };
}

function refuseExisting(paths: { file: string; sidecar: string }, name: string): void {
  const existing = [paths.file, paths.sidecar].filter((p) => existsSync(p));
  if (existing.length)
    throw new WeightsError(
      `${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''} and ${existing.length === 1 ? 'was' : 'were'} left untouched: ` +
        `choose another --name than '${name}', or pass --force to replace ${existing.length === 1 ? 'it' : 'them'}`,
      'ERR_WEIGHTS_EXISTS',
    );
}

/** Checks the tensors against a real engine built for the spec; false when the engine cannot be loaded. */
async function verifyWithEngine(tensors: NamedTensor[], info: Pick<WeightsInfo, 'model' | 'widthFactor' | 'padding' | 'bnEps' | 'bnMomentum'>): Promise<boolean> {
  const options = resolveOptions(
    { model: info.model, widthFactor: info.widthFactor, padding: info.padding, bnEps: info.bnEps, bnMomentum: info.bnMomentum, device: 'cpu', precision: 'fp32' },
    { cudaAvailable: () => false },
  );
  let engine: Engine;
  try {
    engine = await Engine.create(engineConfig(options, 1));
  } catch (err) {
    if (err instanceof NativeLoadError) return false;
    throw err;
  }
  try {
    const state = await engine.exportState();
    const expected = engineTensors(candidateSpec({ model: info.model, widthFactor: info.widthFactor }));
    const actual = new Map(state.model.map((t) => [t.name, t]));
    const differences = expected.filter((t) => actual.get(t.name)?.shape.join(',') !== t.shape.join(',') || actual.get(t.name)?.dtype !== t.dtype);
    if (differences.length || actual.size !== expected.length)
      throw new Error(
        `internal error: the engine's tensors differ from src/model/weights/layouts.ts (${differences.map((t) => t.name).slice(0, 5).join(', ')}; ` +
          `${actual.size} vs ${expected.length} tensors): the engine changed, update engineTensors()`,
      );
    await engine.importState({ model: tensors }, false);
    return true;
  } finally {
    await engine.dispose();
  }
}

export async function importWeights(file: string, options: ImportWeightsOptions = {}): Promise<ImportWeightsResult> {
  const format = options.format ?? 'auto';
  if (format !== 'auto' && !(LAYOUTS as readonly string[]).includes(format))
    throw new TypeError(`Expected one of auto, ${LAYOUTS.join(', ')} for format but received ${JSON.stringify(format)}`);
  if (options.model !== undefined && !isModelName(options.model))
    throw new TypeError(`Expected one of ${MODEL_NAMES.join(', ')} for model but received ${JSON.stringify(options.model)}`);
  if (options.padding !== undefined && options.padding !== 'same' && options.padding !== 'symmetric')
    throw new TypeError(`Expected same or symmetric for padding but received ${JSON.stringify(options.padding)}`);
  const weightsDir = options.weightsDir ?? 'weights';
  if (options.name !== undefined) {
    validateWeightsName(options.name);
    // Refuse before reading a possibly large file.
    if (!options.force) refuseExisting(outputPaths(weightsDir, options.name), options.name);
  }

  const source = await readWeightsFile(file);
  const mapped = mapToEngine(source.tensors, file, { format, model: options.model, widthFactor: options.widthFactor });
  const { model, widthFactor } = mapped.candidate;
  const arch = architectureFor(mapped.layout, model, file, options.padding);
  const name =
    options.name ??
    `${model}-${mapped.layout}${mapped.layout === 'timm' && arch.padding === 'same' ? '-tf' : ''}${widthFactor !== 1 ? `-w${widthFactor}` : ''}`;
  const paths = outputPaths(weightsDir, name);
  if (!options.force) refuseExisting(paths, name);

  const base = { model, widthFactor, padding: arch.padding, bnEps: arch.bnEps, bnMomentum: arch.bnMomentum };
  const notes = [...source.notes, ...mapped.notes];
  const engineChecked = options.verifyWithEngine === false ? false : await verifyWithEngine(mapped.tensors, base);
  if (!engineChecked) notes.push('not loaded into the engine (not built here or verifyWithEngine false): shapes were checked against the architecture table only');
  const info: WeightsInfo = {
    format: WEIGHTS_FORMAT,
    name,
    source: path.resolve(file),
    sourceSha256: source.sha256,
    sourceBytes: source.bytes,
    container: source.container,
    layout: mapped.layout,
    ...base,
    architectureReason: arch.reason,
    tensors: mapped.tensors.length,
    head: mapped.headKept ? 'kept' : mapped.dropped.length ? 'dropped' : 'absent',
    dropped: mapped.dropped,
    notes,
    engineChecked,
    importedAt: new Date().toISOString(),
  };
  const bytes = encodeSafetensors(mapped.tensors, { format: 'pt', [WEIGHTS_METADATA_KEY]: JSON.stringify(info) });
  await writeFileAtomic(paths.file, bytes, { overwrite: options.force ?? false });
  await writeFileAtomic(paths.sidecar, Buffer.from(JSON.stringify(info, null, 2) + '\n'), { overwrite: options.force ?? false });
  return { file: paths.file, sidecar: paths.sidecar, info };
}
