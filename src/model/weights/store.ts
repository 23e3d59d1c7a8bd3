/**
 * Imported weights as the Trainer uses them: resolve `pretrained` (a name in weights/ or a path),
 * read the description (JSON sidecar, else the file's own metadata), make the architecture
 * options follow it, and load the backbone into an engine with a fresh head.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Engine, NamedTensor } from '../../native';
import { readSafetensorsFile } from '../../train/safetensors';
import { isModelName } from '../architectures';
import type { ResolvedOptions, TrainerOptions } from '../config';
import { WeightsError } from './errors';
import { WEIGHTS_FORMAT, WEIGHTS_METADATA_KEY, WeightsInfo } from './info';

export const DEFAULT_WEIGHTS_DIR = 'weights';

export interface PretrainedWeights {
  /** The resolved .safetensors path. */
  file: string;
  info: WeightsInfo;
}

/** The names imported into a weights folder (for messages). */
export function listImportedWeights(weightsDir = DEFAULT_WEIGHTS_DIR): string[] {
  try {
    return fs
      .readdirSync(weightsDir)
      .filter((f) => f.endsWith('.safetensors') && fs.existsSync(path.join(weightsDir, f.replace(/\.safetensors$/, '.json'))))
      .map((f) => f.replace(/\.safetensors$/, ''))
      .sort();
  } catch {
    return [];
  }
}

/** Reads the metadata of a safetensors file without reading its tensors. */
function safetensorsMetadataSync(file: string): Record<string, string> | null {
  const fd = fs.openSync(file, 'r');
  try {
    const lengthBytes = Buffer.alloc(8);
    if (fs.readSync(fd, lengthBytes, 0, 8, 0) !== 8) return null;
    const length = Number(lengthBytes.readBigUInt64LE(0));
    if (length > 100 * 1024 * 1024) return null;
    const header = Buffer.alloc(length);
    if (fs.readSync(fd, header, 0, length, 8) !== length) return null;
    const parsed = JSON.parse(header.toString('utf8')) as { __metadata__?: Record<string, string> };
    return parsed.__metadata__ ?? {};
  } catch {
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

function checkInfo(value: unknown, where: string): WeightsInfo {
  const info = value as Partial<WeightsInfo>;
  const problems: string[] = [];
  if (!info || typeof info !== 'object') problems.push('not a JSON object');
  else {
    if (info.format !== WEIGHTS_FORMAT) problems.push(`format is ${JSON.stringify(info.format)}, expected '${WEIGHTS_FORMAT}'`);
    if (typeof info.model !== 'string' || !isModelName(info.model)) problems.push(`model ${JSON.stringify(info.model)}`);
    if (typeof info.widthFactor !== 'number') problems.push('no widthFactor');
    if (info.padding !== 'same' && info.padding !== 'symmetric') problems.push(`padding ${JSON.stringify(info.padding)}`);
    if (typeof info.bnEps !== 'number' || typeof info.bnMomentum !== 'number') problems.push('no bnEps/bnMomentum');
  }
  if (problems.length)
    throw new WeightsError(`${where} does not describe imported weights (${problems.join('; ')}): import the weights again with \`melanoma weights import\``, 'ERR_WEIGHTS_FORMAT');
  return info as WeightsInfo;
}

/**
 * `pretrained` as a user gives it: a path to an imported .safetensors file, or the name of one
 * in `weightsDir` ('efficientnet-b0-lukemelas' -> weights/efficientnet-b0-lukemelas.safetensors).
 */
export function resolvePretrained(pretrained: string, weightsDir = DEFAULT_WEIGHTS_DIR): PretrainedWeights {
  const looksLikePath = pretrained.endsWith('.safetensors') || pretrained.includes('/') || pretrained.includes(path.sep);
  const file = looksLikePath ? pretrained : path.join(weightsDir, `${pretrained}.safetensors`);
  if (!fs.existsSync(file)) {
    const available = listImportedWeights(weightsDir);
    throw new WeightsError(
      `pretrained weights '${pretrained}' not found (no ${file}). ` +
        (available.length ? `Imported in ${weightsDir}/: ${available.join(', ')}. ` : `Nothing is imported in ${weightsDir}/ yet. `) +
        'Import a .pth/.safetensors file first: `melanoma weights import FILE --name NAME` (see weights/README.md)',
      'ERR_WEIGHTS_NOT_FOUND',
    );
  }
  if (/\.(pth|pt|bin)$/i.test(file))
    throw new WeightsError(`${file} is a PyTorch file: import it first with \`melanoma weights import ${file}\`, then pass the name it prints`, 'ERR_WEIGHTS_FORMAT');
  const sidecar = file.replace(/\.safetensors$/, '') + '.json';
  if (fs.existsSync(sidecar)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(fs.readFileSync(sidecar, 'utf8'));
    } catch (err) {
      throw new WeightsError(`${sidecar} is not valid JSON (${(err as Error).message}): import the weights again with --force`, 'ERR_WEIGHTS_FORMAT');
    }
    return { file, info: checkInfo(parsed, sidecar) };
  }
  const metadata = safetensorsMetadataSync(file);
  if (metadata?.[WEIGHTS_METADATA_KEY]) return { file, info: checkInfo(JSON.parse(metadata[WEIGHTS_METADATA_KEY]), `the metadata of ${file}`) };
  const checkpoint = metadata?.['melanoma.format']?.startsWith('melanoma-native/checkpoint');
  throw new WeightsError(
    checkpoint
      ? `${file} is a training checkpoint, not imported weights: continue its run with \`melanoma train --resume RUN_FOLDER\` (Trainer.load in the API), or score images with \`melanoma predict\`; --pretrained takes weights made by \`melanoma weights import\``
      : `${file} has no sidecar ${path.basename(sidecar)} and no '${WEIGHTS_METADATA_KEY}' metadata, so it was not made by \`melanoma weights import\`: import the original .pth/.safetensors file with it`,
    'ERR_WEIGHTS_FORMAT',
  );
}

/** Options that define the architecture, which pretrained weights fix. */
const ARCHITECTURE_KEYS = ['model', 'widthFactor', 'stageLimit', 'padding', 'bnEps', 'bnMomentum'] as const;

/**
 * The resolved options with the architecture of the weights. An architecture option the user set
 * explicitly to another value is an error (the weights would not fit).
 */
export function pretrainedOptions(resolved: ResolvedOptions, given: TrainerOptions, weights: PretrainedWeights): ResolvedOptions {
  const wanted = {
    model: weights.info.model,
    widthFactor: weights.info.widthFactor,
    stageLimit: 7,
    padding: weights.info.padding,
    bnEps: weights.info.bnEps,
    bnMomentum: weights.info.bnMomentum,
  };
  for (const key of ARCHITECTURE_KEYS) {
    const value = given[key];
    if (value !== undefined && value !== null && value !== wanted[key])
      throw new RangeError(
        `Expected ${key} ${JSON.stringify(wanted[key])} (or no ${key}) with pretrained weights '${weights.info.name}' but received ${JSON.stringify(value)}: ` +
          `the architecture follows the weights (${weights.file}); leave ${key} out, or import weights of the architecture you want`,
      );
  }
  return { ...resolved, ...wanted, pretrained: path.resolve(weights.file) };
}

/**
 * Whether `name` is a tensor of the head (the layers after pooling, the metadata and
 * patient-context branches among them), which fine-tuning starts fresh. The prefixes are the
 * engine's (`EngineInfo.headTensorPrefixes`), which gives the same tensors the head's learning rate.
 */
export function isHeadTensor(name: string, headPrefixes: readonly string[]): boolean {
  return headPrefixes.some((prefix) => name.startsWith(prefix));
}

/** Loads the backbone of imported weights into an engine (strict=false: the head keeps its fresh initialisation). */
export async function loadPretrainedBackbone(engine: Engine, file: string): Promise<{ loaded: number; headSkipped: NamedTensor[] }> {
  const { tensors } = await readSafetensorsFile(file);
  const { headTensorPrefixes } = engine.info();
  const backbone = tensors.filter((t) => !isHeadTensor(t.name, headTensorPrefixes));
  await engine.importState({ model: backbone }, false);
  return { loaded: backbone.length, headSkipped: tensors.filter((t) => isHeadTensor(t.name, headTensorPrefixes)) };
}
