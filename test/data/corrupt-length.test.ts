/**
 * A record whose length field is corrupt (it claims more bytes than the file has) is reported
 * from its header: as a CRC error with CRCs on, as a truncation with verifyCrc: false, and in
 * neither case after reading the rest of the file.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { DataError } from '../../src/data/errors';
import { readTfRecordFile, writeTfRecordFile } from '../../src/data/tfrecord';
import { dataError, tempDir } from './helpers';

const dir = tempDir();

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** 16 records of 256 kB; record 2's length field then claims 2^40 bytes. */
async function corruptFile(): Promise<{ file: string; start: number; size: number }> {
  const file = path.join(dir, `corrupt-${Math.random().toString(36).slice(2)}-16.tfrec`);
  await writeTfRecordFile(file, Array.from({ length: 16 }, (_, i) => Buffer.alloc(256 << 10, i)));
  const start = 2 * ((256 << 10) + 16);
  const handle = await fsp.open(file, 'r+');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(1n << 40n);
  await handle.write(length, 0, 8, start);
  await handle.close();
  return { file, start, size: (await fsp.stat(file)).size };
}

/** Bytes the reader asks the file for, counted on the real file handle. */
function countReads(): { bytes: () => number; restore: () => void } {
  let bytes = 0;
  const open = fsp.open.bind(fsp);
  const spy = jest.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>) => {
    const handle = await open(...args);
    const read = handle.read.bind(handle) as (...a: unknown[]) => Promise<{ bytesRead: number }>;
    (handle as unknown as { read: (...a: unknown[]) => Promise<{ bytesRead: number }> }).read = async (...a: unknown[]) => {
      const result = await read(...a);
      bytes += result.bytesRead;
      return result;
    };
    return handle;
  });
  return { bytes: () => bytes, restore: () => spy.mockRestore() };
}

test('verifyCrc: false: ERR_TFRECORD_TRUNCATED naming the record and what the file has left, without reading it', async () => {
  const { file, start, size } = await corruptFile();
  const reads = countReads();
  try {
    const err = await dataError(() => collect(readTfRecordFile(file, { verifyCrc: false, chunkBytes: 64 << 10 })));
    expect(err).toBeInstanceOf(DataError);
    expect(err).toMatchObject({ code: 'ERR_TFRECORD_TRUNCATED', file, recordIndex: 2, offset: start });
    expect(err.message).toBe(
      `${file}: record 2 at byte ${start}: record of ${2 ** 40} payload bytes needs ${2 ** 40 + 4} bytes after its header ` +
        `but the file ends after ${size - start - 12}. The file is incomplete (interrupted download or copy?): fetch it again.`,
    );
    // Records 0-1 and record 2's header: not the remaining 3.5 MB.
    expect(reads.bytes()).toBeLessThan(start + (256 << 10));
  } finally {
    reads.restore();
  }
});

test('with CRCs on, the same record is named as a corrupt length (ERR_TFRECORD_CRC)', async () => {
  const { file, start } = await corruptFile();
  const err = await dataError(() => collect(readTfRecordFile(file, { chunkBytes: 64 << 10 })));
  expect(err).toMatchObject({ code: 'ERR_TFRECORD_CRC', recordIndex: 2, offset: start });
});
