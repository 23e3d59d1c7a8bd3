/**
 * A minimal, bounds-checked zip reader for torch.save archives: the central directory (ZIP64
 * included), stored entries (what PyTorch writes) and deflated ones (re-zipped files, through
 * node:zlib), each checked against its CRC-32. Every offset read from the file is checked
 * against the file's length before use, so a truncated or corrupt file ends in a WeightsError,
 * never in a RangeError from a Buffer read.
 */
import * as zlib from 'zlib';
import { WeightsError } from './errors';

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;

export function isZip(bytes: Buffer): boolean {
  return bytes.length >= 4 && bytes.readUInt32LE(0) === LOCAL_SIGNATURE;
}

export class ZipArchive {
  readonly entries = new Map<string, ZipEntry>();

  constructor(
    private readonly bytes: Buffer,
    private readonly source: string,
  ) {
    this.readCentralDirectory();
  }

  private fail(why: string): never {
    throw new WeightsError(`${this.source} is not a readable torch.save zip archive: ${why}`, 'ERR_WEIGHTS_FORMAT');
  }

  private truncated(what: string): never {
    this.fail(
      `${what} lies past the end of the file (${this.bytes.length} bytes): the file is truncated (an interrupted download or copy?); ` +
        'download it again and compare its size or checksum',
    );
  }

  private u16(offset: number, what: string): number {
    if (offset < 0 || offset + 2 > this.bytes.length) this.truncated(what);
    return this.bytes.readUInt16LE(offset);
  }

  private u32(offset: number, what: string): number {
    if (offset < 0 || offset + 4 > this.bytes.length) this.truncated(what);
    return this.bytes.readUInt32LE(offset);
  }

  private u64(offset: number, what: string): number {
    if (offset < 0 || offset + 8 > this.bytes.length) this.truncated(what);
    const value = this.bytes.readBigUInt64LE(offset);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} holds an impossible value ${value}`);
    return Number(value);
  }

  private readCentralDirectory(): void {
    const bytes = this.bytes;
    // The end-of-central-directory record is the last 22 bytes plus a comment of up to 65535.
    let eocd = -1;
    for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 0xffff); i--) {
      if (bytes.readUInt32LE(i) === EOCD_SIGNATURE) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0)
      this.fail(
        `it has no end-of-central-directory record (a zip archive ends with one), so it is truncated or damaged; ` +
          'download it again and compare its size or checksum',
      );
    let count = this.u16(eocd + 10, 'the entry count');
    let directorySize = this.u32(eocd + 12, 'the central directory size');
    let directoryOffset = this.u32(eocd + 16, 'the central directory offset');
    if (count === 0xffff || directorySize === 0xffffffff || directoryOffset === 0xffffffff) {
      const locator = eocd - 20;
      if (locator < 0 || this.u32(locator, 'the ZIP64 locator') !== ZIP64_LOCATOR_SIGNATURE) this.fail('a ZIP64 archive without its ZIP64 locator');
      const zip64 = this.u64(locator + 8, 'the ZIP64 record offset');
      if (this.u32(zip64, 'the ZIP64 end record') !== ZIP64_EOCD_SIGNATURE) this.fail('the ZIP64 end record is missing or damaged');
      count = this.u64(zip64 + 32, 'the ZIP64 entry count');
      directorySize = this.u64(zip64 + 40, 'the ZIP64 central directory size');
      directoryOffset = this.u64(zip64 + 48, 'the ZIP64 central directory offset');
    }
    if (directoryOffset + directorySize > bytes.length) this.truncated('the central directory');
    let offset = directoryOffset;
    for (let i = 0; i < count; i++) {
      if (this.u32(offset, `central directory entry ${i}`) !== CENTRAL_SIGNATURE) this.fail(`central directory entry ${i} at byte ${offset} is damaged`);
      const method = this.u16(offset + 10, 'an entry header');
      const crc32 = this.u32(offset + 16, 'an entry header');
      let compressedSize = this.u32(offset + 20, 'an entry header');
      let size = this.u32(offset + 24, 'an entry header');
      const nameLength = this.u16(offset + 28, 'an entry header');
      const extraLength = this.u16(offset + 30, 'an entry header');
      const commentLength = this.u16(offset + 32, 'an entry header');
      let localHeaderOffset = this.u32(offset + 42, 'an entry header');
      const nameStart = offset + 46;
      if (nameStart + nameLength + extraLength + commentLength > bytes.length) this.truncated(`central directory entry ${i}`);
      const name = bytes.toString('utf8', nameStart, nameStart + nameLength);
      // ZIP64 extended information: the 64-bit values of the fields that hold 0xffffffff, in order.
      let extra = nameStart + nameLength;
      const extraEnd = extra + extraLength;
      while (extra + 4 <= extraEnd) {
        const id = bytes.readUInt16LE(extra);
        const length = bytes.readUInt16LE(extra + 2);
        if (id === 0x0001) {
          let field = extra + 4;
          const next = (what: string) => {
            if (field + 8 > extra + 4 + length) this.fail(`the ZIP64 field of '${name}' is too short for its ${what}`);
            const value = this.u64(field, `the ZIP64 field of '${name}'`);
            field += 8;
            return value;
          };
          if (size === 0xffffffff) size = next('size');
          if (compressedSize === 0xffffffff) compressedSize = next('compressed size');
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = next('offset');
        }
        extra += 4 + length;
      }
      this.entries.set(name, { name, method, compressedSize, size, crc32, localHeaderOffset });
      offset = extraEnd + commentLength;
    }
  }

  /** The bytes of one entry (a view into the file for stored entries), CRC-checked. */
  read(name: string): Buffer {
    const entry = this.entries.get(name);
    if (!entry) this.fail(`it has no entry '${name}'`);
    const header = entry.localHeaderOffset;
    if (this.u32(header, `the header of '${name}'`) !== LOCAL_SIGNATURE) this.fail(`the local header of '${name}' at byte ${header} is damaged`);
    const start = header + 30 + this.u16(header + 26, `the header of '${name}'`) + this.u16(header + 28, `the header of '${name}'`);
    if (start + entry.compressedSize > this.bytes.length) this.truncated(`entry '${name}' (bytes ${start} to ${start + entry.compressedSize})`);
    const raw = this.bytes.subarray(start, start + entry.compressedSize);
    let data: Buffer;
    if (entry.method === 0) data = raw;
    else if (entry.method === 8) {
      try {
        data = zlib.inflateRawSync(raw);
      } catch (err) {
        this.fail(`entry '${name}' does not inflate (${(err as Error).message})`);
      }
    } else this.fail(`entry '${name}' uses compression method ${entry.method}; only stored (0) and deflate (8) are supported: re-save the file with torch.save`);
    if (data.length !== entry.size) this.fail(`entry '${name}' holds ${data.length} bytes, its header says ${entry.size}`);
    if (typeof zlib.crc32 === 'function' && zlib.crc32(data) >>> 0 !== entry.crc32 >>> 0)
      this.fail(`entry '${name}' fails its CRC-32 check: the file is damaged; download it again`);
    return data;
  }
}
