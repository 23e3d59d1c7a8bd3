/** tf.train.Example decoding: protobuf edge cases and malformed bytes, each with its exact error. */
import { DataError } from '../../src/data/errors';
import { encodeExample, parseExample } from '../../src/data/tfrecord';

// Hand-built protobuf pieces, so the tests do not depend on the encoder under test.
function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const len = (field: number, body: number[]) => [...varint((field << 3) | 2), ...varint(body.length), ...body];
const str = (s: string) => [...Buffer.from(s)];
const entry = (key: string, feature: number[]) => len(1, [...len(1, str(key)), ...len(2, feature)]);
const example = (...entries: number[][]) => Buffer.from(len(1, entries.flat()));

function malformed(bytes: number[] | Buffer): DataError {
  try {
    parseExample(Buffer.from(bytes));
  } catch (err) {
    expect(err).toBeInstanceOf(DataError);
    expect((err as DataError).code).toBe('ERR_EXAMPLE_MALFORMED');
    return err as DataError;
  }
  throw new Error('expected ERR_EXAMPLE_MALFORMED');
}

describe('parseExample: valid encodings', () => {
  it('an empty Example has no features', () => {
    expect(Object.keys(parseExample(Buffer.alloc(0)))).toEqual([]);
  });

  it('reads unpacked int64 (wire type 0) and unpacked float (wire type 5) lists', () => {
    const f = parseExample(
      example(entry('i', len(3, [0x08, 5, 0x08, ...varint(300)])), entry('f', len(2, [0x0d, 0, 0, 0xc0, 0x3f, 0x0d, 0, 0, 0x20, 0x40]))),
    );
    expect(f.i).toEqual({ kind: 'int64', values: BigInt64Array.from([5n, 300n]) });
    expect(f.f).toEqual({ kind: 'float', values: Float32Array.from([1.5, 2.5]) });
  });

  it('reads a negative int64 (10-byte varint)', () => {
    const minusOne = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    expect(parseExample(example(entry('x', len(3, len(1, minusOne))))).x).toEqual({ kind: 'int64', values: BigInt64Array.from([-1n]) });
  });

  it('skips unknown fields of every wire type at every level', () => {
    const unknowns = [0x78, 0x01, 0x79, 1, 2, 3, 4, 5, 6, 7, 8, 0x7d, 1, 2, 3, 4, ...len(15, [9, 9])]; // field 15: varint, fixed64, fixed32, bytes
    const feature = [...unknowns, ...len(3, [...unknowns, ...len(1, [7])])];
    const bytes = Buffer.from([...unknowns, ...len(1, [...unknowns, ...len(1, [...unknowns, ...len(1, str('k')), ...len(2, feature)])])]);
    expect(parseExample(bytes).k).toEqual({ kind: 'int64', values: BigInt64Array.from([7n]) });
  });

  it('a repeated key keeps the last value; the oneof keeps the last kind; a feature with no list is kind none', () => {
    const f = parseExample(
      example(entry('a', len(3, len(1, [1]))), entry('a', len(1, len(1, str('x')))), entry('b', len(1, len(1, str('y'))).concat(len(3, len(1, [2])))), entry('c', [])),
    );
    expect(f.a).toMatchObject({ kind: 'bytes', values: [Buffer.from('x')] });
    expect(f.b).toEqual({ kind: 'int64', values: BigInt64Array.from([2n]) });
    expect(f.c).toEqual({ kind: 'none' });
  });

  it('a feature named __proto__ is an ordinary key', () => {
    const f = parseExample(encodeExample(JSON.parse('{"__proto__": 1, "constructor": 2}')));
    expect(Object.getPrototypeOf(f)).toBeNull();
    expect(Object.keys(f).sort()).toEqual(['__proto__', 'constructor']);
    expect(f['__proto__']).toEqual({ kind: 'int64', values: BigInt64Array.from([1n]) });
  });
});

describe('parseExample: malformed bytes (EXPECTED FAILURE)', () => {
  it.each<[string, number[], string]>([
    ['a truncated length varint', [0x0a, 0x80], 'truncated varint (features) at byte 1'],
    ['a length past the end', [0x0a, 0x05, 0x00], 'features claims 5 bytes but only 1 remain in its enclosing message at byte 1'],
    ['field number 0', [0x02, 0x00], 'field number 0 at byte 0'],
    ['a group wire type', [0x0b], 'unsupported wire type 3 at byte 1'],
    ['an 11-byte varint', [0x08, ...Array(10).fill(0xff), 0x01], 'varint longer than 10 bytes (unknown field) at byte 1'],
    ['a truncated fixed64', [0x09, 1, 2, 3], 'truncated unknown fixed64 field at byte 1'],
    // The entry (3 bytes inside `features`) claims 10: bounded by its parent, not by the buffer.
    ['a child longer than its parent', [0x0a, 0x02, 0x0a, 0x0a, ...Array(20).fill(0)], 'feature map entry claims 10 bytes but only 0 remain in its enclosing message at byte 3'],
  ])('%s', (_name, bytes, detail) => {
    expect(malformed(bytes).message).toBe(`Malformed tf.train.Example: ${detail} of the payload`);
  });

  it('a packed float_list whose size is not a multiple of 4', () => {
    const bytes = example(entry('f', len(2, len(1, [0, 0, 0]))));
    const err = malformed(bytes);
    expect(err.message).toBe(`Malformed tf.train.Example: packed float_list of 3 bytes is not a multiple of 4 at byte ${bytes.length - 4} of the payload`);
    expect(err.offset).toBe(bytes.length - 4); // the list's length prefix
  });

  it('a packed int64_list ending inside a varint', () => {
    expect(malformed(example(entry('i', len(3, len(1, [0x05, 0x80]))))).message).toMatch(/^Malformed tf\.train\.Example: truncated varint \(int64 value\) at byte \d+ of the payload$/);
  });
});
