/**
 * Random mutations of real records through the framing scanner, the Example parser and the
 * sample mapping: the process must survive and every failure must be a typed DataError.
 * FUZZ_SECONDS=300 npx jest test/data/fuzz runs it longer (default 3 s in the suite).
 * Inputs that once failed are kept below as fixed cases.
 */
import { readFileSync } from 'fs';
import { DataError } from '../../src/data/errors';
import { sampleFromExample } from '../../src/data/isic';
import { mulberry32 } from '../../src/data/random';
import { encodeExample, floatList, parseExample, readTfRecordBuffer } from '../../src/data/tfrecord';
import { loadIoAddon } from '../../src/native';
import { HAVE_UDA1, UDA1_FILES } from './helpers';

const io = loadIoAddon();
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 3);

/** Real records when the data set is there, else synthetic ones of the same shape. */
function seedRecords(): Buffer[] {
  if (HAVE_UDA1) return readTfRecordBuffer(readFileSync(UDA1_FILES[1])).slice(0, 8).map((r) => r.payload);
  return [
    encodeExample({ image: Buffer.alloc(300, 0xab), image_name: 'ISIC_0000001', patient_id: 1, sex: 0, age_approx: 45, target: 1 }),
    encodeExample({ image: Buffer.alloc(10), image_name: 'x', scores: floatList([1, 2, 3]), ids: [1, -2, 3] }, { packed: false }),
  ];
}

function mutate(src: Buffer, random: () => number): Buffer {
  const r = (n: number) => Math.floor(random() * n);
  let b = Buffer.from(src);
  const ops = 1 + r(4);
  for (let k = 0; k < ops; k++) {
    switch (r(6)) {
      case 0: // flip bits
        if (b.length) b[r(b.length)] ^= 1 << r(8);
        break;
      case 1: // truncate
        b = b.subarray(0, r(b.length + 1));
        break;
      case 2: // insert random bytes
        {
          const at = r(b.length + 1);
          const ins = Buffer.from(Array.from({ length: 1 + r(12) }, () => r(256)));
          b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        }
        break;
      case 3: // delete a run
        {
          const at = r(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + r(16))]);
        }
        break;
      case 4: // a huge varint where a length may sit
        {
          const at = r(b.length + 1);
          b = Buffer.concat([b.subarray(0, at), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), b.subarray(at + 1)]);
        }
        break;
      default: // set a byte to an interesting value
        if (b.length) b[r(b.length)] = [0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x1a, 0x0b, 0x0d][r(9)];
    }
  }
  return b;
}

/** Runs every parser on `payload`; returns the typed error codes seen. */
function exercise(payload: Buffer, framed: Buffer): string[] {
  const codes: string[] = [];
  const typed = (fn: () => void, allowed: string[]) => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof DataError) || !allowed.includes(err.code)) throw err;
      codes.push(err.code);
    }
  };
  typed(() => {
    const f = parseExample(payload);
    sampleFromExample(f, { file: 'fuzz.tfrec', recordIndex: 0, payloadOffset: 12 });
  }, ['ERR_EXAMPLE_MALFORMED', 'ERR_EXAMPLE_FEATURE']);
  typed(() => void readTfRecordBuffer(framed, { file: 'fuzz.tfrec' }), ['ERR_TFRECORD_CRC', 'ERR_TFRECORD_TRUNCATED']);
  typed(() => void readTfRecordBuffer(framed, { verifyCrc: false, file: 'fuzz.tfrec' }), ['ERR_TFRECORD_TRUNCATED']);
  return codes;
}

describe('fuzz: mutated records never crash and fail only with typed errors', () => {
  it(`runs for ${SECONDS} s`, () => {
    const seeds = seedRecords();
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1e9);
    const random = mulberry32(seed);
    const deadline = Date.now() + SECONDS * 1000;
    let cases = 0;
    let failures = 0;
    while (Date.now() < deadline) {
      const src = seeds[cases % seeds.length];
      const payload = mutate(src, random);
      // Mutate the framing too, so lengths and CRCs are hit, not only payloads.
      const framed = random() < 0.5 ? io.frameRecords([payload, src]) : mutate(io.frameRecords([src, payload]), random);
      try {
        failures += exercise(payload, framed).length > 0 ? 1 : 0;
      } catch (err) {
        throw new Error(`FUZZ_SEED=${seed} case ${cases}: untyped failure ${String(err)} on payload ${payload.toString('base64')}`);
      }
      cases++;
    }
    // Both paths were taken: some mutants failed with typed errors, some still parsed.
    expect(cases).toBeGreaterThan(100);
    expect(failures).toBeGreaterThan(0);
    expect(failures).toBeLessThan(cases * 3);
  });

  // Fixed cases kept from fuzzing.
  it.each<[string, Buffer]>([
    // A bytes feature with no values as `image`: ERR_EXAMPLE_FEATURE, not an index error.
    ['image with an empty bytes_list', Buffer.from('0a0d0a0b0a05696d61676512020a00', 'hex')],
    // image_name present but as an int64 list.
    ['image_name of the wrong kind', encodeExample({ image: Buffer.from([0xff, 0xd8]), image_name: 5 })],
    // target outside 0/1.
    ['target 7', encodeExample({ image: Buffer.from([0xff, 0xd8]), image_name: 'a', target: 7 })],
  ])('fixed case: %s', (_name, payload) => {
    expect(exercise(payload, io.frameRecords([payload]))).toEqual(['ERR_EXAMPLE_FEATURE']);
  });
});
