/** The batch loader with real sharp decodes: seeded order, batches, dropLast, skip/error, prefetch. */
import sharp from 'sharp';
import { DataError } from '../../src/data/errors';
import { decodeImage } from '../../src/data/images';
import { openDataset } from '../../src/data/isic';
import { readSpan } from '../../src/data/tfrecord';
import { createLoader } from '../../src/data/loader';
import { Batch, LesionSample, LoaderOptions } from '../../src/data/types';
import { UDA1, describeWithUda1 } from './helpers';

let samples: LesionSample[] = [];

beforeAll(async () => {
  samples = await Promise.all(
    Array.from({ length: 43 }, async (_, i) => ({
      imageName: `IMG_${i}`,
      patientId: `P_${i % 11}`,
      target: i % 5 === 0 ? (1 as const) : i === 7 ? null : (0 as const),
      sex: null,
      ageApprox: null,
      anatomSite: null,
      diagnosis: null,
      image: {
        kind: 'memory' as const,
        bytes: await sharp({ create: { width: 48 + i, height: 40, channels: 3, background: { r: i * 5, g: 255 - i * 5, b: (i * 37) % 256 } } })
          .jpeg()
          .toBuffer(),
      },
    })),
  );
});

const base: LoaderOptions = { batchSize: 8, imageSize: 16, shuffle: true, seed: 123, dropLast: false, prefetchBatches: 2, decodeConcurrency: 3 };

async function all(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

const names = (batches: Batch[]) => batches.flatMap((b) => b.samples.map((s) => s.imageName));

describe('createLoader', () => {
  it('same seed and epoch give the same order and the same bytes; other epochs and seeds differ', async () => {
    const a = createLoader(samples, base);
    const b = createLoader(samples, base);
    expect(a.epochOrder(3)).toEqual(b.epochOrder(3));
    const ba = await all(a.epoch(3));
    const bb = await all(b.epoch(3));
    expect(names(ba)).toEqual(names(bb));
    ba.forEach((batch, i) => expect(batch.images.equals(bb[i].images)).toBe(true));
    expect(a.epochOrder(4)).not.toEqual(a.epochOrder(3));
    expect(createLoader(samples, { ...base, seed: 124 }).epochOrder(3)).not.toEqual(a.epochOrder(3));
    // Each epoch is a permutation: every sample exactly once.
    expect([...a.epochOrder(3)].sort((x, y) => x - y)).toEqual(samples.map((_, i) => i));
  });

  it('batches hold the decoded pixels and labels of their samples, in order', async () => {
    const loader = createLoader(samples, { ...base, shuffle: false });
    const batches = await all(loader.epoch(0));
    expect(names(batches)).toEqual(samples.map((s) => s.imageName));
    const b = batches[0];
    expect(b).toMatchObject({ batchSize: 8, height: 16, width: 16 });
    expect(b.images.length).toBe(8 * 16 * 16 * 3);
    for (let i = 0; i < 8; i++) {
      const s = samples[i];
      const expected = await decodeImage(s.image.kind === 'memory' ? s.image.bytes : Buffer.alloc(0), { size: 16 });
      expect(b.images.subarray(i * 768, (i + 1) * 768).equals(expected)).toBe(true);
    }
    expect(Array.from(b.labels)).toEqual([1, 0, 0, 0, 0, 1, 0, 0]); // IMG_7 has no target: 0
  });

  it('dropLast: 43 samples in batches of 8 are 5 full batches, or 6 with a last one of 3', async () => {
    const drop = createLoader(samples, { ...base, dropLast: true });
    expect(drop.batchesPerEpoch).toBe(5);
    expect((await all(drop.epoch(0))).map((b) => b.batchSize)).toEqual([8, 8, 8, 8, 8]);
    const keep = createLoader(samples, base);
    expect(keep.batchesPerEpoch).toBe(6);
    const batches = await all(keep.epoch(0));
    expect(batches.map((b) => b.batchSize)).toEqual([8, 8, 8, 8, 8, 3]);
    expect(batches[5].images.length).toBe(3 * 16 * 16 * 3);
    expect(keep.stats().images).toBe(43);
  });

  it('fromBatch: the same later batches, pixels included, without reading the earlier images', async () => {
    const loader = createLoader(samples, base);
    const whole = await all(loader.epoch(2));
    const tail = await all(loader.epoch(2, { fromBatch: 4 }));
    expect(tail.map((b) => names([b]))).toEqual(whole.slice(4).map((b) => names([b])));
    tail.forEach((b, i) => expect(b.images.equals(whole[4 + i].images)).toBe(true));
    expect(loader.stats().images).toBe(43 - 4 * 8); // only the tail was decoded
    expect(await all(loader.epoch(2, { fromBatch: 6 }))).toEqual([]);
    await expect(loader.epoch(2, { fromBatch: 7 })[Symbol.asyncIterator]().next()).rejects.toThrow('Expected integer between 0 and 6 for fromBatch but received 7');
    const skipping = createLoader(samples, { ...base, onBadImage: 'skip' });
    await expect(skipping.epoch(0, { fromBatch: 1 })[Symbol.asyncIterator]().next()).rejects.toThrow(
      "Expected onBadImage 'error' to start an epoch at a later batch (skipped images would shift the batches)",
    );
  });

  describe('undecodable images', () => {
    const withBad = () => {
      const bad = (name: string): LesionSample => ({ ...samples[1], imageName: name, image: { kind: 'memory', bytes: Buffer.from('not a jpeg') } });
      return [...samples.slice(0, 10), bad('BAD_1'), ...samples.slice(10, 20), bad('BAD_2')];
    };

    it("'skip' lists them in stats and keeps batches full", async () => {
      const loader = createLoader(withBad(), { ...base, shuffle: false, onBadImage: 'skip' });
      const batches = await all(loader.epoch(0));
      expect(batches.map((b) => b.batchSize)).toEqual([8, 8, 4]);
      expect(names(batches)).toEqual(samples.slice(0, 20).map((s) => s.imageName));
      const st = loader.stats();
      expect(st.images).toBe(20);
      expect(st.skipped.map((s) => [s.imageName, s.source])).toEqual([
        ['BAD_1', 'an in-memory buffer'],
        ['BAD_2', 'an in-memory buffer'],
      ]);
      expect(st.skipped[0].reason).toBe(
        'BAD_1 from an in-memory buffer is not an image (first bytes 6e6f7420), not a JPEG: the pipeline reads JPEGs only; convert the image to JPEG or remove it from the dataset',
      );
    });

    it("'error' (the default) stops the epoch with the DataError naming the image", async () => {
      const loader = createLoader(withBad(), { ...base, shuffle: false });
      const seen: string[] = [];
      let error: unknown;
      try {
        for await (const b of loader.epoch(0)) seen.push(...b.samples.map((s) => s.imageName));
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(DataError);
      expect((error as DataError).imageName).toBe('BAD_1');
      expect(seen).toEqual(samples.slice(0, 8).map((s) => s.imageName));
    });
  });

  it('class-balanced sampling oversamples positives to the requested fraction', async () => {
    const positives = samples.filter((s) => s.target === 1).length; // 9
    const negatives = samples.length - positives; // 34
    const loader = createLoader(samples, { ...base, positiveFraction: 0.5 });
    expect(loader.samplesPerEpoch).toBe(2 * negatives);
    const order = loader.epochOrder(0);
    expect(order.filter((i) => samples[i].target === 1)).toHaveLength(negatives);
    expect(new Set(order.filter((i) => samples[i].target !== 1)).size).toBe(negatives);
    // Every positive is repeated floor(34/9) = 3 or 4 times.
    const counts = new Map<number, number>();
    for (const i of order) if (samples[i].target === 1) counts.set(i, (counts.get(i) ?? 0) + 1);
    expect([...counts.values()].every((c) => c === 3 || c === 4)).toBe(true);
    expect(createLoader(samples, { ...base, positiveFraction: 0.5 }).epochOrder(0)).toEqual(order);
  });

  it('prefetching decodes while the consumer works: far less waiting than without it', async () => {
    const many = Array.from({ length: 4 }, () => samples).flat();
    const run = async (prefetchBatches: number) => {
      const loader = createLoader(many, { ...base, imageSize: 96, shuffle: false, prefetchBatches, decodeConcurrency: 2 });
      for await (const _ of loader.epoch(0)) await new Promise((r) => setTimeout(r, 60)); // the "engine"
      return loader.stats();
    };
    const without = await run(0);
    const withPrefetch = await run(3);
    expect(without.waitSeconds).toBeGreaterThan(0);
    expect(withPrefetch.waitSeconds).toBeLessThan(without.waitSeconds * 0.6);
    expect(withPrefetch.images).toBe(many.length);
    expect(withPrefetch.imagesPerSecond).toBeGreaterThan(0);
  });

  it('a consumer that stops early leaves the loader usable', async () => {
    const loader = createLoader(samples, base);
    for await (const _ of loader.epoch(0)) break;
    expect((await all(loader.epoch(1))).reduce((n, b) => n + b.batchSize, 0)).toBe(43);
  });

  describe("decode 'nvjpeg': batches carry the JPEG files for the engine to decode on the GPU", () => {
    const nvjpeg: LoaderOptions = { ...base, shuffle: false, decode: 'nvjpeg', fit: 'cover' };

    it('each batch holds its samples\' JPEG files unchanged, in order, with the fit, and no pixels', async () => {
      const batches = await all(createLoader(samples, nvjpeg).epoch(0));
      expect(names(batches)).toEqual(samples.map((s) => s.imageName));
      let i = 0;
      for (const batch of batches) {
        expect(batch.images.length).toBe(0);
        expect(batch.jpegs!.fit).toBe('cover');
        expect(batch.jpegs!.files.length).toBe(batch.batchSize);
        for (const file of batch.jpegs!.files) expect(file.equals((samples[i++].image as { bytes: Buffer }).bytes)).toBe(true);
        expect([batch.height, batch.width]).toEqual([16, 16]);
      }
      // The sharp loader's batches carry pixels and no files.
      const [decoded] = await all(createLoader(samples, { ...nvjpeg, decode: 'sharp' }).epoch(0));
      expect(decoded.jpegs).toBeUndefined();
      expect(decoded.images.length).toBe(8 * 16 * 16 * 3);
    });

    it('refuses what the GPU decoder would not catch or cannot read: a truncated JPEG, a non-JPEG', async () => {
      const whole = (samples[3].image as { bytes: Buffer }).bytes;
      const truncated: LesionSample = { ...samples[3], imageName: 'CUT', image: { kind: 'memory', bytes: whole.subarray(0, whole.length - 2) } };
      const png: LesionSample = { ...samples[4], imageName: 'PNG', image: { kind: 'memory', bytes: await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).png().toBuffer() } };
      const loader = createLoader([...samples.slice(0, 5), truncated, png], { ...nvjpeg, onBadImage: 'skip' });
      const batches = await all(loader.epoch(0));
      expect(names(batches)).toEqual(samples.slice(0, 5).map((s) => s.imageName));
      const skipped = loader.stats().skipped;
      expect(skipped.map((s) => s.imageName)).toEqual(['CUT', 'PNG']);
      expect(skipped[0].reason).toBe(
        'Cannot decode CUT from an in-memory buffer: the JPEG is truncated (no end-of-image marker in its last 4096 bytes). The JPEG is damaged: replace it or remove it from the dataset',
      );
      expect(skipped[1].reason).toMatch(/^PNG from an in-memory buffer is a PNG image, not a JPEG/);
      // The same file whole passes: the check looks for the marker, not for any one length.
      expect(await all(createLoader([samples[3]], nvjpeg).epoch(0))).toHaveLength(1);
    });
  });

  it('validates options with messages naming them (BAD CALL)', () => {
    expect(() => createLoader(samples, { ...base, batchsize: 4 } as unknown as LoaderOptions)).toThrow("Unknown loader option 'batchsize'");
    expect(() => createLoader(samples, { ...base, batchSize: 0 })).toThrow(new RangeError('Expected integer >= 1 for batchSize but received 0 of type number'));
    expect(() => createLoader(samples, { ...base, onBadImage: 'ignore' as 'skip' })).toThrow("Expected 'skip' or 'error' for onBadImage but received 'ignore'");
    expect(() => createLoader(samples, { ...base, positiveFraction: 1 })).toThrow('Expected a number in (0, 1) for positiveFraction but received 1');
    expect(() => createLoader(samples, { ...base, decode: 'gpu' as 'nvjpeg' })).toThrow("Expected one of sharp, nvjpeg for decode but received 'gpu'");
  });
});

describeWithUda1('loader over the real TFRecords (uda1-dev)', () => {
  it('delivers all 300 images at 64 px with labels matching targets', async () => {
    const ds = await openDataset(UDA1);
    const loader = createLoader(ds.samples, { ...base, batchSize: 32, imageSize: 64, decodeConcurrency: 4 });
    const batches = await all(loader.epoch(0));
    expect(batches.reduce((n, b) => n + b.batchSize, 0)).toBe(300);
    expect(batches.reduce((n, b) => n + b.labels.reduce((s, v) => s + v, 0), 0)).toBe(83);
    expect(new Set(names(batches)).size).toBe(300);
    expect(loader.stats()).toMatchObject({ images: 300, skipped: [] });
  });

  it("with decode 'nvjpeg', hands over each record's JPEG bytes exactly as the TFRecord stores them", async () => {
    const ds = await openDataset(UDA1);
    const loader = createLoader(ds.samples, { ...base, shuffle: false, batchSize: 50, imageSize: 256, decode: 'nvjpeg' });
    const batches = await all(loader.epoch(0));
    const files = batches.flatMap((b) => b.jpegs!.files);
    expect(files).toHaveLength(300);
    for (const [i, sample] of ds.samples.entries()) {
      const span = sample.image as { kind: 'tfrecord'; file: string; offset: number; length: number };
      expect(files[i].equals(await readSpan(span.file, span.offset, span.length))).toBe(true);
    }
    expect(loader.stats()).toMatchObject({ images: 300, skipped: [] });
  });
});
