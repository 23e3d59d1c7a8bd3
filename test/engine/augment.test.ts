/**
 * Train-time augmentation in the engine, observed through previewAugment (the batch as a train
 * step sees it, back as uint8 HWC). Real LibTorch on CPU, tiny images.
 */
import { renderLesion } from '../../src/data/demo';
import { mulberry32 } from '../../src/data/random';
import { TrainerOptions, engineConfig, resolveOptions } from '../../src/model/config';
import { Engine } from '../../src/native';

const SIZE = 32;
const N = 4;

function lesions(seed = 5): Buffer {
  const random = mulberry32(seed);
  return Buffer.concat(Array.from({ length: N }, (_, i) => renderLesion(SIZE, i % 2 === 1, random)));
}

async function withEngine<T>(options: TrainerOptions, fn: (engine: Engine) => Promise<T>): Promise<T> {
  const resolved = resolveOptions({ widthFactor: 0.25, stageLimit: 2, imageSize: SIZE, device: 'cpu', ...options }, { cudaAvailable: () => false });
  const engine = await Engine.create(engineConfig(resolved, 1));
  try {
    return await fn(engine);
  } finally {
    await engine.dispose();
  }
}

const batch = (images: Buffer) => ({ images, batchSize: N, height: SIZE, width: SIZE });
const pixel = (images: Buffer, n: number, y: number, x: number) => {
  const at = ((n * SIZE + y) * SIZE + x) * 3;
  return [images[at], images[at + 1], images[at + 2]];
};

describe('augmentation (engine, CPU)', () => {
  const images = lesions();

  test('no augmentation returns the images unchanged', async () => {
    const out = await withEngine({ augment: 'none' }, (e) => e.previewAugment(batch(images)));
    expect(out.equals(images)).toBe(true);
  });

  test('flip with probability 1 flips both axes exactly; transpose swaps them', async () => {
    const flipped = await withEngine({ augment: { flip: 1 } }, (e) => e.previewAugment(batch(images)));
    const transposed = await withEngine({ augment: { transpose: 1 } }, (e) => e.previewAugment(batch(images)));
    for (let n = 0; n < N; n++) {
      for (const [y, x] of [
        [0, 0],
        [3, 17],
        [20, 5],
        [31, 31],
      ]) {
        expect(pixel(flipped, n, y, x)).toEqual(pixel(images, n, SIZE - 1 - y, SIZE - 1 - x));
        expect(pixel(transposed, n, y, x)).toEqual(pixel(images, n, x, y));
      }
    }
  });

  test('brightness scales each image by one factor within the magnitude', async () => {
    const out = await withEngine({ augment: { brightness: 1, brightnessMagnitude: 0.5 } }, (e) => e.previewAugment(batch(images)));
    expect(out.equals(images)).toBe(false);
    for (let n = 0; n < N; n++) {
      const ratios: number[] = [];
      for (let i = n * SIZE * SIZE * 3; i < (n + 1) * SIZE * SIZE * 3; i++) if (images[i] > 60 && out[i] < 250) ratios.push(out[i] / images[i]);
      const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
      expect(mean).toBeGreaterThanOrEqual(0.5 - 0.01);
      expect(mean).toBeLessThanOrEqual(1.5 + 0.01);
      // One factor per image: every pixel's ratio is close to the image's mean ratio.
      for (const r of ratios) expect(Math.abs(r - mean)).toBeLessThan(0.03);
    }
  });

  test('cutout fills one square per image with the ImageNet mean colour', async () => {
    const out = await withEngine({ augment: { cutout: 1, cutoutSize: 0.25 } }, (e) => e.previewAugment(batch(images)));
    const meanColour = [124, 116, 104]; // round(255 * [0.485, 0.456, 0.406])
    const side = 0.25 * SIZE;
    for (let n = 0; n < N; n++) {
      let filled = 0;
      for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) if (pixel(out, n, y, x).every((v, c) => v === meanColour[c])) filled++;
      expect(filled).toBeGreaterThan(0);
      expect(filled).toBeLessThanOrEqual(side * side);
    }
  });

  test('the same seed gives the same augmented batches; another seed does not', async () => {
    const run = (seed: number) => withEngine({ augment: 'strong', seed }, async (e) => [await e.previewAugment(batch(images)), await e.previewAugment(batch(images))]);
    const [a1, a2] = await run(7);
    const [b1, b2] = await run(7);
    const [c1] = await run(8);
    expect(a1.equals(b1) && a2.equals(b2)).toBe(true);
    expect(a1.equals(a2)).toBe(false); // successive batches draw anew
    expect(a1.equals(c1)).toBe(false);
    expect(a1.equals(images)).toBe(false);
  });

  test('engines alive at once keep their own random streams', async () => {
    const options = { augment: 'strong' as const, seed: 7, widthFactor: 0.25, stageLimit: 2, imageSize: SIZE, device: 'cpu' as const };
    const create = (seed: number) => Engine.create(engineConfig(resolveOptions({ ...options, seed }, { cudaAvailable: () => false }), 1));
    const alone = await create(7);
    const expected = [await alone.previewAugment(batch(images)), await alone.previewAugment(batch(images))];
    await alone.dispose();

    const first = await create(7);
    const firstPreview = await first.previewAugment(batch(images));
    const other = await create(8); // built (and seeded) between two draws of `first`
    await other.previewAugment(batch(images));
    const secondPreview = await first.previewAugment(batch(images));
    await Promise.all([first.dispose(), other.dispose()]);
    expect(firstPreview.equals(expected[0])).toBe(true);
    expect(secondPreview.equals(expected[1])).toBe(true);
  });

  test('training with augmentation is reproducible on CPU for a seed', async () => {
    const labels = Float32Array.from({ length: N }, (_, i) => i % 2);
    const losses = (seed: number) =>
      withEngine({ augment: 'report', seed }, async (e) => {
        const out: number[] = [];
        for (let i = 0; i < 3; i++) out.push((await e.trainStep({ ...batch(images), labels, lr: 1e-3 })).loss);
        return out;
      });
    expect(await losses(3)).toEqual(await losses(3));
  });

  test('bad augment options are rejected with the option named', () => {
    const resolve = (augment: unknown) => resolveOptions({ augment } as TrainerOptions, { cudaAvailable: () => false });
    expect(() => resolve('heavy')).toThrow("Expected one of none, report, strong for augment but received 'heavy' of type string");
    expect(() => resolve({ flip: 2 })).toThrow('Expected number in [0, 1] for augment.flip but received 2 of type number');
    expect(() => resolve({ rotate: 0.5 })).toThrow("Unknown augment option 'rotate'");
  });
});
