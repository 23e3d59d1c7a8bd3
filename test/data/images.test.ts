/** sharp decoding to the training size: real JPEGs, fit modes, EXIF, grayscale, CMYK, progressive, bad bytes. */
import { readFileSync } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { DataError } from '../../src/data/errors';
import { ImageBytesReader, decodeImage, jpegOrientation, loadSampleImage, readSampleJpeg, sniffImageFormat } from '../../src/data/images';
import { openDataset } from '../../src/data/isic';
import type { LesionSample } from '../../src/data/types';
import { UDA1, describeWithUda1 } from './helpers';

const px = (buf: Buffer, size: number, row: number, col: number) => [...buf.subarray((row * size + col) * 3, (row * size + col) * 3 + 3)];
const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;

/** An RGB image of vertical stripes (one colour per stripe). */
function stripes(width: number, height: number, colours: [number, number, number][]): ReturnType<typeof sharp> {
  const raw = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) raw.set(colours[Math.floor((x * colours.length) / width)], (y * width + x) * 3);
  return sharp(raw, { raw: { width, height, channels: 3 } });
}

async function decodeError(p: Promise<unknown>): Promise<DataError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(DataError);
    return err as DataError;
  }
  throw new Error('expected a DataError');
}

describe('decodeImage', () => {
  it('decodes a 1024x1024 JPEG to 256x256x3 and 512x512x3', async () => {
    const jpeg = await stripes(1024, 1024, [[200, 30, 30], [30, 200, 30]]).jpeg({ quality: 90 }).toBuffer();
    for (const size of [256, 512]) {
      const out = await decodeImage(jpeg, { size });
      expect(out.length).toBe(size * size * 3);
      expect(px(out, size, 10, 5)[0]).toBeGreaterThan(150); // left stripe red
      expect(px(out, size, 10, size - 5)[1]).toBeGreaterThan(150); // right stripe green
    }
  });

  it("fit 'fill' keeps every column; fit 'cover' crops the centre", async () => {
    const jpeg = await stripes(300, 100, [[255, 0, 0], [0, 255, 0], [0, 0, 255]]).jpeg({ quality: 95 }).toBuffer();
    const fill = await decodeImage(jpeg, { size: 30, fit: 'fill' });
    expect(px(fill, 30, 15, 1)[0]).toBeGreaterThan(200);
    expect(px(fill, 30, 15, 28)[2]).toBeGreaterThan(200);
    const cover = await decodeImage(jpeg, { size: 30, fit: 'cover' });
    for (const col of [1, 15, 28]) expect(px(cover, 30, 15, col)[1]).toBeGreaterThan(200);
  });

  it('applies EXIF orientation (6: rotate 90 degrees clockwise)', async () => {
    // Stored: left half black, right half white; displayed after rotation: top black, bottom white.
    const jpeg = await stripes(40, 20, [[0, 0, 0], [255, 255, 255]]).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    expect((await sharp(jpeg).metadata()).orientation).toBe(6);
    const out = await decodeImage(jpeg, { size: 20 });
    expect(mean(px(out, 20, 2, 10))).toBeLessThan(40);
    expect(mean(px(out, 20, 17, 10))).toBeGreaterThan(215);
  });

  it('turns a grayscale JPEG into 3 equal channels', async () => {
    const gray = await stripes(64, 64, [[40, 40, 40], [220, 220, 220]]).toColourspace('b-w').jpeg().toBuffer();
    expect((await sharp(gray).metadata()).channels).toBe(1);
    const out = await decodeImage(gray, { size: 32 });
    expect(out.length).toBe(32 * 32 * 3);
    for (let i = 0; i < out.length; i += 3) expect([out[i + 1], out[i + 2]]).toEqual([out[i], out[i]]);
  });

  it('turns a CMYK JPEG into sRGB close to the original colours', async () => {
    const colours: [number, number, number][] = [[200, 40, 40], [40, 160, 220]];
    const cmyk = await stripes(64, 64, colours).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe('cmyk');
    const out = await decodeImage(cmyk, { size: 32 });
    for (const [col, colour] of [[4, colours[0]], [28, colours[1]]] as const)
      px(out, 32, 16, col).forEach((v, c) => expect(Math.abs(v - colour[c])).toBeLessThan(30));
  });

  it('decodes a progressive JPEG like the baseline one', async () => {
    const img = stripes(256, 256, [[250, 10, 10], [10, 10, 250], [10, 250, 10]]);
    const baseline = await img.clone().jpeg({ quality: 90 }).toBuffer();
    const progressive = await img.clone().jpeg({ quality: 90, progressive: true }).toBuffer();
    expect((await sharp(progressive).metadata()).isProgressive).toBe(true);
    const a = await decodeImage(baseline, { size: 64 });
    const b = await decodeImage(progressive, { size: 64 });
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
    expect(maxDiff).toBeLessThanOrEqual(8);
  });

  it('a PNG is refused with ERR_IMAGE_FORMAT naming the image and its source', async () => {
    const png = await stripes(8, 8, [[1, 2, 3]]).png().toBuffer();
    expect(sniffImageFormat(png)).toBe('png');
    const err = await decodeError(decodeImage(png, { size: 8, imageName: 'ISIC_1', source: { kind: 'file', path: '/data/ISIC_1.jpg' } }));
    expect(err).toMatchObject({ code: 'ERR_IMAGE_FORMAT', imageName: 'ISIC_1', file: '/data/ISIC_1.jpg' });
    expect(err.message).toBe(
      'ISIC_1 from /data/ISIC_1.jpg is a PNG image, not a JPEG: the pipeline reads JPEGs only; convert the image to JPEG or remove it from the dataset',
    );
  });

  it('bytes that are no image at all: ERR_IMAGE_FORMAT with the first bytes', async () => {
    const err = await decodeError(
      decodeImage(Buffer.from('<html>'), { size: 8, imageName: 'ISIC_2', source: { kind: 'tfrecord', file: 'train03-9.tfrec', recordIndex: 4, offset: 1234, length: 6 } }),
    );
    expect(err.message).toBe(
      'ISIC_2 from train03-9.tfrec record 4 (JPEG at byte 1234) is not an image (first bytes 3c68746d), not a JPEG: the pipeline reads JPEGs only; convert the image to JPEG or remove it from the dataset',
    );
  });

  it('a truncated JPEG: ERR_IMAGE_DECODE naming the image and source', async () => {
    const jpeg = await stripes(128, 128, [[9, 99, 199], [200, 20, 2]]).jpeg().toBuffer();
    const err = await decodeError(decodeImage(jpeg.subarray(0, jpeg.length >> 1), { size: 16, imageName: 'ISIC_3' }));
    expect(err.code).toBe('ERR_IMAGE_DECODE');
    expect(err.message).toMatch(/^Cannot decode ISIC_3 from an in-memory buffer: .*premature end.*\. The JPEG is damaged: replace it or remove it from the dataset$/i);
  });

  it('rejects a bad size (BAD CALL)', async () => {
    await expect(decodeImage(Buffer.alloc(4), { size: 0 })).rejects.toThrow(new RangeError('Expected positive integer for size but received 0'));
  });
});

/** A JPEG whose APP1 holds one hand-written EXIF IFD entry: tag 0x0112, type `type`, `value`, in `order`. */
function withOrientationEntry(jpeg: Buffer, order: 'II' | 'MM', value: number, type = 3): Buffer {
  const tiff = Buffer.alloc(8 + 2 + 12 + 4);
  const le = order === 'II';
  const u16 = (v: number, o: number) => (le ? tiff.writeUInt16LE(v, o) : tiff.writeUInt16BE(v, o));
  const u32 = (v: number, o: number) => (le ? tiff.writeUInt32LE(v, o) : tiff.writeUInt32BE(v, o));
  tiff.write(order, 0, 'latin1');
  u16(42, 2);
  u32(8, 4);
  u16(1, 8);
  u16(0x0112, 10);
  u16(type, 12);
  u32(1, 14);
  u16(value, 18);
  const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const app1 = Buffer.concat([Buffer.from([0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 0xff]), payload]);
  return Buffer.concat([jpeg.subarray(0, 2), app1, jpeg.subarray(2)]);
}

test('a cut-off JPEG is called truncated, even when libvips gives no reason (it races under concurrent decodes)', async () => {
  const full = await stripes(120, 90, [[200, 30, 0], [0, 200, 60], [20, 0, 200]]).jpeg({ quality: 90 }).toBuffer();
  const messages = new Set<string>();
  // Decoded in pairs with a whole image: libvips' per-thread error text then sometimes goes missing.
  for (let cut = 200; cut < full.length - 10; cut += Math.max(1, Math.floor(full.length / 60))) {
    const [cutOff] = await Promise.allSettled([decodeImage(full.subarray(0, cut), { size: 32, imageName: 'cut' }), decodeImage(full, { size: 32, imageName: 'whole' })]);
    if (cutOff.status === 'rejected') messages.add((cutOff.reason as Error).message.replace(/^Cannot decode cut from an in-memory buffer: /, '').split('. The JPEG')[0]);
  }
  expect(messages.size).toBeGreaterThan(0);
  for (const m of messages) expect(m).toMatch(/premature end of JPEG image|^the JPEG is truncated \(no end-of-image marker in its last 4096 bytes\)$/);
});

describe('EXIF orientation for the GPU decoder (readSampleJpeg)', () => {
  const sample = (bytes: Buffer): LesionSample => ({
    imageName: 'turned',
    patientId: 'p',
    target: 0,
    sex: null,
    ageApprox: null,
    anatomSite: null,
    diagnosis: null,
    image: { kind: 'memory', bytes },
  });

  test('jpegOrientation reads tag 0x0112 in either byte order, as sharp does; no or unreadable EXIF is 1', async () => {
    const plain = await stripes(40, 30, [[200, 0, 0], [0, 200, 0], [0, 0, 200]]).jpeg().toBuffer();
    expect(jpegOrientation(plain)).toBe(1);
    for (const orientation of [1, 3, 6, 8]) {
      const written = await sharp(plain).withMetadata({ orientation }).jpeg().toBuffer();
      expect(jpegOrientation(written)).toBe((await sharp(written).metadata()).orientation ?? 1);
      expect(jpegOrientation(written)).toBe(orientation);
    }
    for (const order of ['II', 'MM'] as const) {
      const handMade = withOrientationEntry(plain, order, 5);
      expect(jpegOrientation(handMade)).toBe(5);
      expect((await sharp(handMade).metadata()).orientation).toBe(5);
      expect(jpegOrientation(withOrientationEntry(plain, order, 9))).toBe(1); // out of range
      expect(jpegOrientation(withOrientationEntry(plain, order, 6, 4))).toBe(1); // not a SHORT
    }
    const cut = withOrientationEntry(plain, 'II', 6);
    expect(jpegOrientation(cut.subarray(0, 12))).toBe(1); // the segment runs past the bytes
  });

  test('an upright file goes to the GPU as it is; a turned one upright, as sharp decodes it on the CPU', async () => {
    const plain = await stripes(40, 30, [[200, 0, 0], [0, 200, 0], [0, 0, 200]]).jpeg({ quality: 95 }).toBuffer();
    const reader = new ImageBytesReader();
    expect(await readSampleJpeg(sample(plain), reader)).toBe(plain);
    const turned = await sharp(plain).withMetadata({ orientation: 6 }).jpeg({ quality: 95 }).toBuffer();
    const sent = await readSampleJpeg(sample(turned), reader);
    expect(jpegOrientation(sent)).toBe(1);
    const stored = await sharp(sent).metadata();
    expect([stored.width, stored.height, stored.orientation ?? 1]).toEqual([30, 40, 1]); // 90 degrees: 40x30 stored, 30x40 upright
    // What the GPU decodes (the pixels as stored) against what the CPU path decodes (EXIF applied).
    const gpu = await sharp(sent).raw().toBuffer();
    const cpu = await sharp(turned).rotate().raw().toBuffer();
    let largest = 0;
    for (let i = 0; i < cpu.length; i++) largest = Math.max(largest, Math.abs(gpu[i] - cpu[i]));
    expect(largest).toBeLessThan(8); // one re-encoding at quality 95, 4:4:4 (measured: 3)
    await reader.close();
  });
});

describeWithUda1('real JPEGs (uda1-dev)', () => {
  it('decodes to the requested size from files and from TFRecord spans, identically', async () => {
    const tf = await openDataset(UDA1);
    const files = await openDataset(UDA1, { format: 'jpeg' });
    const byName = new Map(files.samples.map((s) => [s.imageName, s]));
    const reader = new ImageBytesReader();
    try {
      for (const s of tf.samples.slice(0, 12)) {
        for (const size of [64, 224, 384]) {
          const a = await loadSampleImage(s, size, reader);
          const b = await loadSampleImage(byName.get(s.imageName)!, size, reader);
          expect(a.length).toBe(size * size * 3);
          expect(a.equals(b)).toBe(true);
        }
      }
      // Real dermoscopy is not flat: the decode produced actual image content.
      const img = await loadSampleImage(tf.samples[0], 64, reader);
      expect(Math.max(...img) - Math.min(...img)).toBeGreaterThan(50);
      const ref = await sharp(readFileSync(path.join(UDA1, 'jpeg', `${tf.samples[0].imageName}.jpg`))).resize(64, 64, { fit: 'fill' }).raw().toBuffer();
      expect(img.equals(ref)).toBe(true);
    } finally {
      await reader.close();
    }
  });
});
