/** The io addon itself: CRC32C paths against each other and known vectors, masking, framing. */
import { loadIoAddon } from '../../src/native';

const io = loadIoAddon();

function randomBytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}

describe('crc32c', () => {
  // RFC 3720 (iSCSI) appendix B.4 vectors and the common check value.
  const vectors: [string, Buffer, number][] = [
    ['"123456789"', Buffer.from('123456789'), 0xe3069283],
    ['empty', Buffer.alloc(0), 0],
    ['32 zeros', Buffer.alloc(32, 0), 0x8a9136aa],
    ['32 x 0xff', Buffer.alloc(32, 0xff), 0x62a8ab43],
    ['0..31', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
    ['31..0', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c],
  ];

  it.each(vectors)('software path: %s', (_name, bytes, expected) => {
    expect(io.crc32c(bytes, 'software')).toBe(expected);
  });

  it.each(vectors)('auto path: %s', (_name, bytes, expected) => {
    expect(io.crc32c(bytes)).toBe(expected);
  });

  const hw = io.crc32cHardwareAvailable() ? it : it.skip;
  hw('hardware and software agree on every length 0..300 at every alignment 0..7', () => {
    const data = randomBytes(400, 7);
    for (let start = 0; start < 8; start++)
      for (let n = 0; n <= 300; n++) {
        const view = data.subarray(start, start + n);
        expect([start, n, io.crc32c(view, 'hardware')]).toEqual([start, n, io.crc32c(view, 'software')]);
      }
  });

  hw('hardware path: known vectors and a 1 MiB buffer', () => {
    for (const [, bytes, expected] of vectors) expect(io.crc32c(bytes, 'hardware')).toBe(expected);
    const big = randomBytes(1 << 20, 3);
    expect(io.crc32c(big, 'hardware')).toBe(io.crc32c(big, 'software'));
  });

  it('continues a CRC across pieces', () => {
    const data = randomBytes(1000, 11);
    for (const impl of ['software', 'auto'] as const) {
      const first = io.crc32c(data.subarray(0, 333), impl);
      expect(io.crc32c(data.subarray(333), impl, first)).toBe(io.crc32c(data, impl));
    }
  });

  it('rejects a non-buffer and an unknown impl (BAD CALL)', () => {
    // Native errors come from the main realm, not jest's: match by name and message.
    expect(() => io.crc32c('abc' as unknown as Buffer)).toThrow(expect.objectContaining({ name: 'TypeError', message: 'Expected a Buffer or Uint8Array for bytes' }));
    expect(() => io.crc32c(Buffer.alloc(1), 'fast' as 'auto')).toThrow("Expected 'auto', 'hardware' or 'software' for impl but received 'fast'");
  });
});

describe('masked CRC', () => {
  it('matches the TFRecord formula and inverts', () => {
    for (const crc of [0, 1, 0xe3069283, 0xffffffff, 0x80000000]) {
      const expected = ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
      expect(io.maskCrc(crc)).toBe(expected);
      expect(io.unmaskCrc(io.maskCrc(crc))).toBe(crc);
    }
  });
});

describe('framing', () => {
  it('frames payloads that scanBuffer reads back, with both CRCs in place', () => {
    const payloads = [Buffer.from('a'), Buffer.alloc(0), randomBytes(5000, 1)];
    const framed = io.frameRecords(payloads);
    expect(framed.length).toBe(payloads.reduce((n, p) => n + p.length + 16, 0));
    // First record by hand: length, masked CRC of the length, payload, masked CRC of the payload.
    expect(framed.readBigUInt64LE(0)).toBe(1n);
    expect(framed.readUInt32LE(8)).toBe(io.maskCrc(io.crc32c(framed.subarray(0, 8))));
    expect(framed.readUInt32LE(13)).toBe(io.maskCrc(io.crc32c(Buffer.from('a'))));
    const scan = io.scanBuffer(framed, { verifyCrc: true });
    expect(Array.from(scan.lengths)).toEqual([1, 0, 5000]);
    expect(Array.from(scan.offsets)).toEqual([12, 29, 45]);
    expect(scan.consumed).toBe(framed.length);
  });

  it('partial scans stop before an incomplete record without an error', () => {
    const framed = io.frameRecords([Buffer.from('abc'), Buffer.from('defgh')]);
    const scan = io.scanBuffer(framed.subarray(0, framed.length - 2), { partial: true, baseOffset: 100, firstIndex: 4 });
    expect(Array.from(scan.offsets)).toEqual([112]);
    expect(scan.consumed).toBe(19);
  });
});
