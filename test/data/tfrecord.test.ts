/** TFRecord reading and writing against TensorFlow's own files, and what corrupt files produce. */
import { promises as fsp, readFileSync, readdirSync } from 'fs';
import * as path from 'path';
import { DataError } from '../../src/data/errors';
import {
  countFromFileName,
  encodeExample,
  floatList,
  indexTfRecordFile,
  parseExample,
  readTfRecordBuffer,
  readTfRecordFile,
  writeTfRecordFile,
} from '../../src/data/tfrecord';
import { loadIoAddon } from '../../src/native';
import { UDA1, UDA1_FILES, describeWithUda1, tempDir, dataError } from './helpers';

const io = loadIoAddon();

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}


describe('countFromFileName', () => {
  it('reads the SIIM-ISIC count and nothing else', () => {
    expect(countFromFileName('/x/train00-2071.tfrec')).toBe(2071);
    expect(countFromFileName('test15-677.tfrec')).toBe(677);
    expect(countFromFileName('train.tfrec')).toBeNull();
    expect(countFromFileName('train-12.tfrecord')).toBeNull();
  });
});

describeWithUda1('real TFRecords written by TensorFlow (uda1-dev)', () => {
  it('indexes all 300 records with CRCs checked; counts match the file names', async () => {
    let total = 0;
    for (const file of UDA1_FILES) {
      const index = await indexTfRecordFile(file, { verifyCrc: true });
      expect(index.offsets).toHaveLength(60);
      expect(index.countFromName).toBe(60);
      // Records tile the file exactly: header, payload, footer, next header ...
      let pos = 0;
      index.offsets.forEach((off, i) => {
        expect(off).toBe(pos + 12);
        pos = off + index.lengths[i] + 4;
      });
      expect(pos).toBe(index.size);
      total += index.offsets.length;
    }
    expect(total).toBe(300);
  });

  it('streams the same records with tiny chunks as the index finds', async () => {
    const file = UDA1_FILES[2];
    const index = await indexTfRecordFile(file);
    const records = await collect(readTfRecordFile(file, { chunkBytes: 100 }));
    expect(records.map((r) => r.offset)).toEqual(index.offsets);
    expect(records.map((r) => r.payload.length)).toEqual(index.lengths);
    expect(records.map((r) => r.recordIndex)).toEqual([...Array(60).keys()]);
  });

  it('decodes every Example: image is the JPEG file byte for byte, scalars are int64', async () => {
    const names = new Set<string>();
    for (const file of UDA1_FILES) {
      for await (const record of readTfRecordFile(file)) {
        const f = parseExample(record.payload);
        expect(Object.keys(f).sort()).toEqual(
          ['age_approx', 'anatom_site_general_challenge', 'diagnosis', 'image', 'image_name', 'patient_id', 'sex', 'target'],
        );
        const name = f.image_name.kind === 'bytes' ? f.image_name.values[0].toString() : '';
        expect(name).toMatch(/^ISIC_\d{7}$/);
        names.add(name);
        if (f.image.kind !== 'bytes') throw new Error('image is not bytes');
        expect(f.image.values[0].equals(readFileSync(path.join(UDA1, 'jpeg', `${name}.jpg`)))).toBe(true);
        for (const key of ['patient_id', 'sex', 'age_approx', 'anatom_site_general_challenge', 'diagnosis', 'target']) {
          const v = f[key];
          expect(v.kind).toBe('int64');
          if (v.kind === 'int64') expect(v.values).toHaveLength(1);
        }
        const target = f.target.kind === 'int64' ? Number(f.target.values[0]) : -1;
        expect([0, 1]).toContain(target);
      }
    }
    expect(names.size).toBe(300);
  });

  it('frames payloads byte-identically to TensorFlow', async () => {
    const original = readFileSync(UDA1_FILES[0]);
    const payloads = readTfRecordBuffer(original).map((r) => r.payload);
    expect(io.frameRecords(payloads).equals(original)).toBe(true);
  });
});

describe('round trip: encodeExample + writeTfRecordFile -> readTfRecordFile + parseExample', () => {
  const dir = tempDir();

  it('keeps every feature kind, packed and unpacked', async () => {
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]);
    const features = {
      image: jpeg,
      image_name: 'ISIC_0000001',
      patient_id: 7,
      sex: -1,
      big: [9007199254740991n, -9223372036854775808n, 9223372036854775807n],
      list: [1, 2, 300000],
      tags: ['a', Buffer.from('b')],
      score: floatList([0.5, -2.25, 1e-3]),
    };
    const file = path.join(dir, 'rt00-2.tfrec');
    await writeTfRecordFile(file, [encodeExample(features), encodeExample(features, { packed: false })]);
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
    const records = await collect(readTfRecordFile(file));
    expect(records).toHaveLength(2);
    for (const r of records) {
      const f = parseExample(r.payload);
      expect(f.image).toMatchObject({ kind: 'bytes', values: [jpeg] });
      expect(f.image_name).toMatchObject({ kind: 'bytes', values: [Buffer.from('ISIC_0000001')] });
      expect(f.patient_id).toEqual({ kind: 'int64', values: BigInt64Array.from([7n]) });
      expect(f.sex).toEqual({ kind: 'int64', values: BigInt64Array.from([-1n]) });
      expect(f.big).toEqual({ kind: 'int64', values: BigInt64Array.from(features.big) });
      expect(f.list).toEqual({ kind: 'int64', values: BigInt64Array.from([1n, 2n, 300000n]) });
      expect(f.tags).toMatchObject({ kind: 'bytes', values: [Buffer.from('a'), Buffer.from('b')] });
      expect(f.score).toEqual({ kind: 'float', values: Float32Array.from([0.5, -2.25, 1e-3]) });
      // Byte views point into the payload at the offsets given.
      if (f.image.kind === 'bytes') expect(r.payload.subarray(f.image.offsets[0], f.image.offsets[0] + jpeg.length).equals(jpeg)).toBe(true);
    }
    // Packed and unpacked encodings really differ on the wire.
    expect(records[0].payload.equals(records[1].payload)).toBe(false);
  });

  it('rejects floats without floatList, empty arrays and mixed arrays (BAD CALL)', () => {
    expect(() => encodeExample({ age: 45.5 })).toThrow(
      new TypeError("Feature 'age': expected an integer for int64_list but received 45.5; wrap floats with floatList()"),
    );
    expect(() => encodeExample({ x: [] })).toThrow("Feature 'x': an empty array has no type");
    expect(() => encodeExample({ x: [1, 'a'] as unknown as number[] })).toThrow(TypeError);
  });

  it('refuses a file name whose count differs from the records given', async () => {
    await expect(writeTfRecordFile(path.join(dir, 'bad00-3.tfrec'), [encodeExample({ a: 1 })])).rejects.toThrow(
      'the name says 3 records but 1 were given',
    );
  });

  it('writes an empty file for no records and reads it back as empty', async () => {
    const file = path.join(dir, 'empty.tfrec');
    await writeTfRecordFile(file, []);
    expect(await collect(readTfRecordFile(file))).toEqual([]);
  });
});

describeWithUda1('corrupt TFRecord files', () => {
  const dir = tempDir();
  const original = () => readFileSync(UDA1_FILES[0]);
  const spans = () => readTfRecordBuffer(original()).map((r) => ({ offset: r.offset, length: r.payload.length }));

  it('truncated file: ERR_TFRECORD_TRUNCATED naming file, record and byte offset (index and stream)', async () => {
    const s = spans();
    const file = path.join(dir, 'cut.tfrec');
    const cut = s[30].offset + 100;
    await fsp.writeFile(file, original().subarray(0, cut));
    const start = s[30].offset - 12;
    const expected =
      `${file}: record 30 at byte ${start}: record of ${s[30].length} payload bytes needs ${s[30].length + 4} bytes ` +
      'after its header but the file ends after 100. The file is incomplete (interrupted download or copy?): fetch it again.';
    for (const read of [() => indexTfRecordFile(file), () => collect(readTfRecordFile(file, { chunkBytes: 4096 }))]) {
      const err = await dataError(read);
      expect(err.message).toBe(expected);
      expect(err).toMatchObject({ code: 'ERR_TFRECORD_TRUNCATED', file, recordIndex: 30, offset: start });
    }
  });

  it('file cut inside a header names the header', async () => {
    const s = spans();
    const file = path.join(dir, 'cut-header.tfrec');
    await fsp.writeFile(file, original().subarray(0, s[5].offset - 12 + 7));
    const err = await dataError(() => indexTfRecordFile(file));
    expect(err.message).toBe(
      `${file}: record 5 at byte ${s[5].offset - 12}: the file ends inside a record header (7 of 12 bytes present). ` +
        'The file is incomplete (interrupted download or copy?): fetch it again.',
    );
  });

  it('flipped payload byte: ERR_TFRECORD_CRC naming file, record and byte offset; verifyCrc: false reads it', async () => {
    const s = spans();
    const bytes = Buffer.from(original());
    const at = s[7].offset + 500;
    bytes[at] ^= 0x10;
    const file = path.join(dir, 'flip.tfrec');
    await fsp.writeFile(file, bytes);
    const stored = bytes.readUInt32LE(s[7].offset + s[7].length);
    const computed = io.maskCrc(io.crc32c(bytes.subarray(s[7].offset, s[7].offset + s[7].length)));
    const hex = (v: number) => `0x${v.toString(16).padStart(8, '0')}`;
    const expected =
      `${file}: record 7 at byte ${s[7].offset - 12}: payload CRC mismatch (stored ${hex(stored)}, computed ${hex(computed)}) ` +
      `in the ${s[7].length} payload bytes at byte ${s[7].offset}. The file is corrupt: fetch it again (\`melanoma inspect FOLDER\` lists every corrupt file; the API's verifyCrc: false reads past the check).`;
    for (const read of [() => indexTfRecordFile(file), () => collect(readTfRecordFile(file)), async () => readTfRecordBuffer(bytes, { file })]) {
      const err = await dataError(read);
      expect(err.message).toBe(expected);
      expect(err).toMatchObject({ code: 'ERR_TFRECORD_CRC', file, recordIndex: 7, offset: s[7].offset - 12 });
    }
    expect(await collect(readTfRecordFile(file, { verifyCrc: false }))).toHaveLength(60);
  });

  it('flipped length byte: length CRC mismatch', async () => {
    const s = spans();
    const bytes = Buffer.from(original());
    bytes[s[12].offset - 12 + 1] ^= 0x01;
    const file = path.join(dir, 'flip-length.tfrec');
    await fsp.writeFile(file, bytes);
    const err = await dataError(() => indexTfRecordFile(file));
    expect(err.code).toBe('ERR_TFRECORD_CRC');
    expect(err.message).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: record 12 at byte ${s[12].offset - 12}: length CRC mismatch \\(stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}\\)\\. The file is corrupt`));
  });

  it('record count differing from the file name: ERR_TFRECORD_COUNT', async () => {
    const file = path.join(dir, 'train00-61.tfrec');
    await fsp.writeFile(file, original());
    const expected = `${file}: the file name says 61 records but the file holds 60. The file is incomplete or misnamed: fetch it again, or rename it to match its content.`;
    for (const read of [() => indexTfRecordFile(file), () => collect(readTfRecordFile(file))]) {
      const err = await dataError(read);
      expect(err).toMatchObject({ code: 'ERR_TFRECORD_COUNT', message: expected, file });
    }
  });

  it('missing file: ERR_TFRECORD_IO naming it', async () => {
    const file = path.join(dir, 'nope.tfrec');
    const err = await dataError(() => indexTfRecordFile(file));
    expect(err).toMatchObject({ code: 'ERR_TFRECORD_IO', file });
    expect(err.message).toBe(`${file}: cannot open: No such file or directory. Check the path and its permissions.`);
    const err2 = await dataError(() => collect(readTfRecordFile(file)));
    expect(err2.message).toMatch(/^.*nope\.tfrec: cannot open the TFRecord file \(ENOENT/);
  });
});
