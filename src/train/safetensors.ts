/**
 * The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
 * header length, a JSON header (name -> dtype, shape, data_offsets; optional "__metadata__" of
 * string -> string), then the raw little-endian tensor bytes, contiguous. Python reads these files
 * with `safetensors.torch.load_file`.
 */
import { promises as fsp } from 'fs';
import type { NamedTensor, TensorDType } from '../native';

const DTYPE_BYTES: Record<TensorDType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, U8: 1, BOOL: 1 };
/** Header lengths above this are not a safetensors file (the reference reader's own limit). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

export interface SafetensorsFile {
  tensors: NamedTensor[];
  metadata: Record<string, string>;
}

export function encodeSafetensors(tensors: readonly NamedTensor[], metadata: Record<string, string> = {}): Buffer {
  return Buffer.concat(safetensorsParts(tensors, metadata));
}

/**
 * The file as its parts, in order: the length and header, then each tensor's own bytes (not
 * copied). Written part by part, a large checkpoint never exists twice in memory.
 */
export function safetensorsParts(tensors: readonly NamedTensor[], metadata: Record<string, string> = {}): Buffer[] {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (expected !== t.data.length)
      throw new SafetensorsError(`tensor '${t.name}': ${t.data.length} bytes for shape [${t.shape.join(', ')}] of ${t.dtype} (expected ${expected})`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.length] };
    offset += t.data.length;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Pad the header with spaces to a multiple of 8 so the tensor data is aligned.
  const padding = (8 - (json.length % 8)) % 8;
  if (padding) json = Buffer.concat([json, Buffer.alloc(padding, 0x20)]);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return [Buffer.concat([length, json]), ...tensors.map((t) => t.data)];
}

export function decodeSafetensors(bytes: Buffer, source = 'buffer'): SafetensorsFile {
  const fail = (why: string): never => {
    throw new SafetensorsError(`${source} is not a readable safetensors file: ${why}`);
  };
  if (bytes.length < 8) fail(`it is ${bytes.length} bytes long`);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  if (headerLength > MAX_HEADER_BYTES || 8 + headerLength > bytes.length)
    fail(`its header claims ${headerLength} bytes but the file has ${bytes.length} (truncated or another format)`);
  let header: Record<string, { dtype: TensorDType; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  } catch (err) {
    return fail(`its header is not JSON (${(err as Error).message})`);
  }
  const dataStart = 8 + headerLength;
  const tensors: NamedTensor[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const { dtype, shape, data_offsets: offsets } = entry as { dtype: TensorDType; shape: number[]; data_offsets: [number, number] };
    if (!(dtype in DTYPE_BYTES)) fail(`tensor '${name}' has unsupported dtype ${String(dtype)}`);
    if (!Array.isArray(shape) || !Array.isArray(offsets) || offsets.length !== 2) fail(`tensor '${name}' has a malformed entry`);
    const [begin, end] = offsets;
    const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) fail(`tensor '${name}' spans ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${expected}`);
    if (begin < 0 || dataStart + end > bytes.length) fail(`tensor '${name}' ends at byte ${dataStart + end}, past the end of the file (${bytes.length}): truncated`);
    tensors.push({ name, dtype, shape, data: bytes.subarray(dataStart + begin, dataStart + end) });
  }
  return { tensors, metadata };
}

export async function readSafetensorsFile(file: string): Promise<SafetensorsFile> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SafetensorsError(code === 'ENOENT' ? `${file} does not exist` : `${file} could not be read: ${(err as Error).message}`);
  }
  return decodeSafetensors(bytes, file);
}
