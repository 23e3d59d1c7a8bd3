/**
 * TFRecord files and tf.train.Example payloads.
 *
 * Framing and CRC checks run in the io addon (native/io); this module owns files, streaming and
 * errors. Large files are never loaded whole: `indexTfRecordFile` scans a file piecewise into
 * record spans, `readTfRecordFile` streams records chunk by chunk, and `readSpan` reads one span.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { IoFeature, IoScanResult, loadIoAddon } from '../native';
import { DataError, DataErrorCode } from './errors';
import { refuseUnknownOptions } from '../options';

export interface TfRecordReadOptions {
  /** Check the masked CRC32C of every length and payload (default true). */
  verifyCrc?: boolean;
  /** Bytes read per step while streaming (default 4 MiB). */
  chunkBytes?: number;
}

/** One record: its index in the file, the file offset of its payload, and the payload. */
export interface TfRecord {
  recordIndex: number;
  offset: number;
  payload: Buffer;
}

/** Where every record of a file lies, without the payloads. */
export interface TfRecordIndex {
  file: string;
  /** File offset of each payload. */
  offsets: number[];
  lengths: number[];
  size: number;
  /** The count in the file name (`-([0-9]+).tfrec`), null when the name has none. */
  countFromName: number | null;
}

const COUNT_IN_NAME = /-([0-9]+)\.tfrec$/;

/** The record count a SIIM-ISIC style name carries (`train00-2071.tfrec` -> 2071), else null. */
export function countFromFileName(file: string): number | null {
  const m = COUNT_IN_NAME.exec(path.basename(file));
  return m ? Number(m[1]) : null;
}

function resolveReadOptions(options: TfRecordReadOptions): Required<TfRecordReadOptions> {
  refuseUnknownOptions(options, ['verifyCrc', 'chunkBytes'], { kind: 'TFRecord read option' });
  const { verifyCrc = true, chunkBytes = 4 << 20 } = options;
  if (typeof verifyCrc !== 'boolean') throw new TypeError(`Expected boolean for verifyCrc but received ${typeof verifyCrc}`);
  if (!Number.isInteger(chunkBytes) || chunkBytes < 16)
    throw new RangeError(`Expected an integer >= 16 for chunkBytes but received ${chunkBytes}`);
  return { verifyCrc, chunkBytes };
}

/** Turns an io addon error (which carries `code`) into a DataError; other errors pass through. */
function fromNative(err: unknown, file?: string): unknown {
  // Duck-typed: addon errors may come from another realm (jest's vm), where instanceof fails.
  if (typeof err !== 'object' || err === null) return err;
  const e = err as Error & { code?: string; recordIndex?: number; offset?: number; file?: string };
  if (typeof e.code !== 'string' || !(e.code.startsWith('ERR_TFRECORD') || e.code === 'ERR_EXAMPLE_MALFORMED')) return err;
  return new DataError(e.code as DataErrorCode, e.message, {
    file: e.file ?? file,
    recordIndex: e.recordIndex,
    offset: e.offset,
  });
}

function checkCount(file: string, count: number): void {
  const expected = countFromFileName(file);
  if (expected !== null && expected !== count) {
    throw new DataError(
      'ERR_TFRECORD_COUNT',
      `${file}: the file name says ${expected} records but the file holds ${count}. ` +
        'The file is incomplete or misnamed: fetch it again, or rename it to match its content.',
      { file },
    );
  }
}

/**
 * Scans a file on the libuv pool (the addon reads it piecewise) and returns where each record
 * lies. The count in the file name, when there is one, must match.
 */
export async function indexTfRecordFile(file: string, options: TfRecordReadOptions = {}): Promise<TfRecordIndex> {
  const { verifyCrc } = resolveReadOptions(options);
  let scan: IoScanResult;
  try {
    scan = await loadIoAddon().scanFile(file, { verifyCrc });
  } catch (err) {
    throw fromNative(err, file);
  }
  checkCount(file, scan.offsets.length);
  return {
    file,
    offsets: Array.from(scan.offsets),
    lengths: Array.from(scan.lengths),
    size: scan.size,
    countFromName: countFromFileName(file),
  };
}

/**
 * Streams the records of a file: reads `chunkBytes` at a time and yields each complete record
 * (CRCs checked unless verifyCrc is false). A record larger than a chunk is read in one piece.
 * After the last record the count in the file name is checked.
 */
export async function* readTfRecordFile(file: string, options: TfRecordReadOptions = {}): AsyncGenerator<TfRecord> {
  const { verifyCrc, chunkBytes } = resolveReadOptions(options);
  const io = loadIoAddon();
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, 'r');
  } catch (err) {
    throw new DataError('ERR_TFRECORD_IO', `${file}: cannot open the TFRecord file (${(err as Error).message})`, { file, cause: err });
  }
  try {
    const size = (await handle.stat()).size;
    let pending: Buffer = Buffer.alloc(0); // bytes of incomplete records carried to the next step
    let pendingStart = 0; // file offset of pending[0]
    let recordIndex = 0;
    for (;;) {
      const filePos = pendingStart + pending.length;
      // Read at least the rest of the record that is pending, so huge records cost one read.
      let want = chunkBytes;
      if (pending.length >= 12) {
        const declared = Number(pending.readBigUInt64LE(0));
        const need = declared + 16 - pending.length;
        // A record that would end past the end of the file (a truncated file, or a corrupt
        // length read with verifyCrc: false) is reported from its header: reading (and
        // allocating) the rest of the file first would only find the same thing out.
        if (need > size - filePos) throw truncatedRecord(io, { file, pending, pendingStart, recordIndex, declared, size, verifyCrc });
        if (need > want) want = need;
      }
      want = Math.min(want, size - filePos);
      const chunk = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await handle.read(chunk, got, want - got, filePos + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const bytes = pending.length ? Buffer.concat([pending, chunk.subarray(0, got)]) : chunk.subarray(0, got);
      const atEnd = got < want || filePos + got >= size; // a file that shrank ends here too
      let scan: IoScanResult;
      try {
        scan = io.scanBuffer(bytes, { verifyCrc, partial: !atEnd, baseOffset: pendingStart, firstIndex: recordIndex, file });
      } catch (err) {
        throw fromNative(err, file);
      }
      for (let i = 0; i < scan.offsets.length; i++) {
        const start = scan.offsets[i] - pendingStart;
        yield { recordIndex: recordIndex++, offset: scan.offsets[i], payload: bytes.subarray(start, start + scan.lengths[i]) };
      }
      pending = bytes.subarray(scan.consumed);
      pendingStart += scan.consumed;
      if (atEnd) break;
    }
    checkCount(file, recordIndex);
  } finally {
    await handle.close();
  }
}

/**
 * The error of a record whose declared payload runs past the end of the file. With CRCs on, a
 * corrupt length is named as such (the native scanner checks the header's CRC); otherwise the
 * message is the scanner's own truncation message, with the bytes the file really has left.
 */
function truncatedRecord(
  io: ReturnType<typeof loadIoAddon>,
  r: { file: string; pending: Buffer; pendingStart: number; recordIndex: number; declared: number; size: number; verifyCrc: boolean },
): unknown {
  if (r.verifyCrc) {
    try {
      io.scanBuffer(r.pending.subarray(0, 12), { verifyCrc: true, partial: true, baseOffset: r.pendingStart, firstIndex: r.recordIndex, file: r.file });
    } catch (err) {
      return fromNative(err, r.file);
    }
  }
  return new DataError(
    'ERR_TFRECORD_TRUNCATED',
    `${r.file}: record ${r.recordIndex} at byte ${r.pendingStart}: record of ${r.declared} payload bytes needs ${r.declared + 4} bytes ` +
      `after its header but the file ends after ${r.size - r.pendingStart - 12}. The file is incomplete (interrupted download or copy?): fetch it again.`,
    { file: r.file, recordIndex: r.recordIndex, offset: r.pendingStart },
  );
}

/** Records of in-memory TFRecord bytes (small files, tests). `file` is named in errors. */
export function readTfRecordBuffer(bytes: Buffer, options: { verifyCrc?: boolean; file?: string } = {}): TfRecord[] {
  let scan: IoScanResult;
  try {
    scan = loadIoAddon().scanBuffer(bytes, { verifyCrc: options.verifyCrc ?? true, file: options.file });
  } catch (err) {
    throw fromNative(err, options.file);
  }
  return Array.from(scan.offsets, (offset, i) => ({
    recordIndex: i,
    offset,
    payload: bytes.subarray(offset, offset + scan.lengths[i]),
  }));
}

/** Reads `length` bytes at `offset` of an open file or a path. */
export async function readSpan(file: string | fsp.FileHandle, offset: number, length: number): Promise<Buffer> {
  const handle = typeof file === 'string' ? await fsp.open(file, 'r') : file;
  try {
    const out = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await handle.read(out, got, length - got, offset + got);
      if (bytesRead === 0) {
        const name = typeof file === 'string' ? file : 'the file';
        throw new DataError('ERR_TFRECORD_TRUNCATED', `${name}: ${length} bytes expected at byte ${offset} but the file ends after ${got}`, {
          file: typeof file === 'string' ? file : undefined,
          offset,
        });
      }
      got += bytesRead;
    }
    return out;
  } finally {
    if (typeof file === 'string') await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------
// tf.train.Example
// ---------------------------------------------------------------------------------------------

/** A decoded feature. Bytes values are views into the parsed payload; `offsets` locate them in it. */
export type ExampleFeature =
  | { kind: 'bytes'; values: Buffer[]; offsets: number[] }
  | { kind: 'float'; values: Float32Array }
  | { kind: 'int64'; values: BigInt64Array }
  | { kind: 'none' };

/** Features by name (a null-prototype object: any name is safe). */
export type ExampleFeatures = Record<string, ExampleFeature>;

/**
 * Decodes a tf.train.Example (bytes, float and int64 lists; packed and unpacked). Malformed
 * bytes give DataError ERR_EXAMPLE_MALFORMED with the byte offset inside the payload.
 */
export function parseExample(bytes: Buffer): ExampleFeatures {
  let raw: IoFeature[];
  try {
    raw = loadIoAddon().parseExample(bytes);
  } catch (err) {
    const e = err as Error & { code?: string; offset?: number };
    if (e.code === 'ERR_EXAMPLE_MALFORMED')
      throw new DataError('ERR_EXAMPLE_MALFORMED', `Malformed tf.train.Example: ${e.message} at byte ${e.offset} of the payload`, {
        offset: e.offset,
      });
    throw err;
  }
  const out: ExampleFeatures = Object.create(null);
  for (const f of raw) {
    if (f.kind === 'bytes') {
      const values: Buffer[] = [];
      const offsets: number[] = [];
      for (let i = 0; i < f.spans.length; i += 2) {
        offsets.push(f.spans[i]);
        values.push(bytes.subarray(f.spans[i], f.spans[i] + f.spans[i + 1]));
      }
      out[f.key] = { kind: 'bytes', values, offsets };
    } else if (f.kind === 'none') {
      out[f.key] = { kind: 'none' };
    } else {
      out[f.key] = { kind: f.kind, values: f.values } as ExampleFeature;
    }
  }
  return out;
}

/** Marks numbers as a float_list (plain numbers encode as int64_list). */
export class FloatList {
  readonly values: readonly number[];
  constructor(values: number | readonly number[]) {
    this.values = typeof values === 'number' ? [values] : [...values];
  }
}

/** `floatList(0.5)` or `floatList([1, 2.5])`: encodes as float_list. */
export function floatList(values: number | readonly number[]): FloatList {
  return new FloatList(values);
}

/**
 * What `encodeExample` accepts per feature:
 * - Buffer / Uint8Array / string (UTF-8), or an array of them -> bytes_list;
 * - integer number / bigint, or an array of them -> int64_list (numbers must be safe integers);
 * - `floatList(x)` -> float_list (a non-integer plain number is rejected, so floats are explicit).
 */
export type FeatureInput =
  | Uint8Array
  | string
  | number
  | bigint
  | readonly (Uint8Array | string)[]
  | readonly (number | bigint)[]
  | FloatList;

// Minimal protobuf writer: varints, tags and length-prefixed fields.
function varint(value: bigint): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, value);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

function lenField(field: number, body: Buffer): Buffer {
  return Buffer.concat([varint(BigInt((field << 3) | 2)), varint(BigInt(body.length)), body]);
}

function toInt64(name: string, v: number | bigint): bigint {
  if (typeof v === 'bigint') {
    if (BigInt.asIntN(64, v) !== v) throw new RangeError(`Feature '${name}': ${v} does not fit in int64`);
    return v;
  }
  if (!Number.isSafeInteger(v))
    throw new TypeError(`Feature '${name}': expected an integer for int64_list but received ${v}; wrap floats with floatList()`);
  return BigInt(v);
}

function encodeFeature(name: string, value: FeatureInput, packed: boolean): Buffer {
  if (value instanceof FloatList) {
    if (packed) {
      const body = Buffer.alloc(4 * value.values.length);
      value.values.forEach((v, i) => body.writeFloatLE(v, 4 * i));
      return lenField(2, value.values.length ? lenField(1, body) : Buffer.alloc(0));
    }
    const parts = value.values.map((v) => {
      const b = Buffer.alloc(5);
      b[0] = (1 << 3) | 5;
      b.writeFloatLE(v, 1);
      return b;
    });
    return lenField(2, Buffer.concat(parts));
  }
  const list = Array.isArray(value) ? (value as readonly unknown[]) : [value];
  if (list.length === 0) throw new TypeError(`Feature '${name}': an empty array has no type; use floatList([]) or leave the feature out`);
  if (list.every((v) => typeof v === 'string' || v instanceof Uint8Array)) {
    const parts = (list as (string | Uint8Array)[]).map((v) => lenField(1, typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
    return lenField(1, Buffer.concat(parts));
  }
  if (list.every((v) => typeof v === 'number' || typeof v === 'bigint')) {
    const ints = (list as (number | bigint)[]).map((v) => toInt64(name, v));
    if (packed) return lenField(3, lenField(1, Buffer.concat(ints.map(varint))));
    return lenField(3, Buffer.concat(ints.map((v) => Buffer.concat([Buffer.from([1 << 3]), varint(v)]))));
  }
  throw new TypeError(
    `Feature '${name}': expected Buffer, string, integer, bigint, an array of one of those, or floatList(...) but received ${typeof value}`,
  );
}

/**
 * Encodes a tf.train.Example. Repeated numbers are packed as TensorFlow writes them; pass
 * `{ packed: false }` for the older unpacked encoding (both are legal and both parse).
 */
export function encodeExample(features: Record<string, FeatureInput>, options: { packed?: boolean } = {}): Buffer {
  const packed = options.packed ?? true;
  const entries = Object.entries(features).map(([name, value]) =>
    lenField(1, Buffer.concat([lenField(1, Buffer.from(name, 'utf8')), lenField(2, encodeFeature(name, value, packed))])),
  );
  return lenField(1, Buffer.concat(entries));
}

/**
 * Writes framed records to `file` atomically: a temporary file in the same folder, fsync, then
 * rename, so readers never see half a file. A count in the file name must match records.length.
 */
export async function writeTfRecordFile(file: string, records: Buffer[]): Promise<void> {
  const expected = countFromFileName(file);
  if (expected !== null && expected !== records.length)
    throw new RangeError(`${file}: the name says ${expected} records but ${records.length} were given; name it -${records.length}.tfrec`);
  const io = loadIoAddon();
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const handle = await fsp.open(tmp, 'w');
  try {
    // Frame in groups of ~64 MiB so memory stays bounded for large sets.
    for (let i = 0; i < records.length; ) {
      let bytes = 0;
      let j = i;
      while (j < records.length && (j === i || bytes + records[j].length < 64 << 20)) bytes += records[j++].length;
      await handle.write(io.frameRecords(records.slice(i, j)));
      i = j;
    }
    await handle.sync();
    await handle.close();
    await fsp.rename(tmp, file);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}
