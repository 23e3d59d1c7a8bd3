/**
 * Opens a weights file of any supported container (torch.save zip, legacy torch.save,
 * safetensors) and returns its state dict as a flat list of tensors, plus the SHA-256 of the
 * file. A training checkpoint ({'state_dict': ..., 'epoch': ...}) is unwrapped, and the
 * `module.` prefix of DataParallel models removed, each with a note.
 */
import { createHash } from 'crypto';
import { promises as fsp } from 'fs';
import { SafetensorsError, decodeSafetensors } from '../../train/safetensors';
import { WeightsError } from './errors';
import { PyDict, PyValue, describePy } from './pickle';
import { SourceTensor, TorchTensor, isLegacyTorch, materialize, readTorchFile } from './torch-file';
import { isZip } from './zip';

export interface WeightsFile {
  tensors: SourceTensor[];
  container: 'zip' | 'legacy' | 'safetensors';
  sha256: string;
  bytes: number;
  notes: string[];
}

/** Checkpoint keys that hold the state dict, in the order they are tried. */
const WRAPPER_KEYS = ['state_dict', 'model_state_dict', 'model', 'state_dict_ema', 'model_ema', 'net'];

function tensorEntries(dict: PyDict): [string, TorchTensor][] {
  return [...dict.map.entries()].filter((e): e is [string, TorchTensor] => typeof e[0] === 'string' && e[1] instanceof TorchTensor);
}

function stateDictOf(root: PyValue, source: string, notes: string[]): [string, TorchTensor][] {
  if (!(root instanceof PyDict))
    throw new WeightsError(`${source} holds ${describePy(root)}, not a state dict (a dict of tensors)`, 'ERR_WEIGHTS_FORMAT');
  const own = tensorEntries(root);
  if (own.length > 0) return own;
  for (const key of WRAPPER_KEYS) {
    const inner = root.map.get(key);
    if (inner instanceof PyDict && tensorEntries(inner).length > 0) {
      notes.push(`the file is a checkpoint: its state dict was taken from ['${key}']`);
      return tensorEntries(inner);
    }
  }
  const keys = [...root.map.keys()].slice(0, 10).map((k) => String(k));
  throw new WeightsError(
    `${source} holds a dict without tensors (keys: ${keys.join(', ')}); expected a state dict, or a checkpoint with one under ${WRAPPER_KEYS.join('/')}`,
    'ERR_WEIGHTS_FORMAT',
  );
}

function stripModulePrefix(tensors: SourceTensor[], notes: string[]): SourceTensor[] {
  if (tensors.length > 0 && tensors.every((t) => t.name.startsWith('module.'))) {
    notes.push("the 'module.' prefix of a DataParallel model was removed from every key");
    return tensors.map((t) => ({ ...t, name: t.name.slice('module.'.length) }));
  }
  return tensors;
}

export function decodeWeights(bytes: Buffer, source: string): Omit<WeightsFile, 'sha256' | 'bytes'> {
  const notes: string[] = [];
  if (isZip(bytes) || isLegacyTorch(bytes)) {
    const file = readTorchFile(bytes, source);
    const tensors = stateDictOf(file.root, source, notes).map(([name, tensor]) => materialize(name, tensor.ref, source));
    return { tensors: stripModulePrefix(tensors, notes), container: file.format, notes };
  }
  // safetensors: an 8-byte header length, then '{'
  if (bytes.length >= 9 && bytes[8] === 0x7b) {
    try {
      const { tensors, metadata } = decodeSafetensors(bytes, source);
      if (metadata['melanoma.format']?.startsWith('melanoma-native/checkpoint'))
        throw new WeightsError(
          `${source} is a melanoma-native training checkpoint, not pretrained weights: continue it with Trainer.load (its model tensors already have the engine's names)`,
          'ERR_WEIGHTS_FORMAT',
        );
      return { tensors: stripModulePrefix(tensors, notes), container: 'safetensors', notes };
    } catch (err) {
      if (err instanceof SafetensorsError) throw new WeightsError(err.message, 'ERR_WEIGHTS_FORMAT');
      throw err;
    }
  }
  // Neither: readTorchFile names what the file starts with.
  readTorchFile(bytes, source);
  throw new WeightsError(`${source}: unknown format`, 'ERR_WEIGHTS_FORMAT');
}

export async function readWeightsFile(file: string): Promise<WeightsFile> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new WeightsError(
      code === 'ENOENT' ? `${file} does not exist` : code === 'EISDIR' ? `${file} is a folder: give the .pth/.safetensors file in it` : `${file} could not be read: ${(err as Error).message}`,
      'ERR_WEIGHTS_NOT_FOUND',
    );
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return { ...decodeWeights(bytes, file), sha256, bytes: bytes.length };
}

/** float16 bits to a number (IEEE 754 half precision, subnormals and inf/NaN included). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** The tensor's values as little-endian float32 bytes (F32, F16, BF16 or F64 sources). */
export function toF32(tensor: SourceTensor): Buffer {
  const n = tensor.shape.reduce((a, b) => a * b, 1);
  const out = Buffer.alloc(n * 4);
  const src = tensor.data;
  switch (tensor.dtype) {
    case 'F32':
      src.copy(out, 0, 0, n * 4);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out.writeFloatLE(halfToFloat(src.readUInt16LE(2 * i)), 4 * i);
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) out.writeUInt32LE(src.readUInt16LE(2 * i) << 16 >>> 0, 4 * i);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out.writeFloatLE(src.readDoubleLE(8 * i), 4 * i);
      break;
    default:
      throw new WeightsError(`tensor '${tensor.name}' is ${tensor.dtype}, not floating point`, 'ERR_WEIGHTS_DTYPE');
  }
  return out;
}
