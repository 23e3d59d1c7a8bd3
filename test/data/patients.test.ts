/**
 * Patient grouping for models with patient context: the grouped orders, the batch plan that keeps
 * patients whole, the engine's patient numbers, and the loader that uses them (real sharp decodes).
 */
import sharp from 'sharp';
import { createLoader } from '../../src/data/loader';
import { defaultPatientRunLength, groupByPatient, patientGroups } from '../../src/data/patients';
import { mulberry32 } from '../../src/data/random';
import { Batch, LesionSample, LoaderOptions } from '../../src/data/types';

/** Samples of the given patients, in order ('' = no patient id), each a tiny real JPEG. */
async function samplesOf(patients: readonly string[]): Promise<LesionSample[]> {
  return Promise.all(
    patients.map(async (patientId, i) => ({
      imageName: `IMG_${i}`,
      patientId,
      target: (i % 3 === 0 ? 1 : 0) as 0 | 1,
      sex: null,
      ageApprox: null,
      anatomSite: null,
      diagnosis: null,
      image: { kind: 'memory' as const, bytes: await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: i * 9, g: 40, b: 200 - i * 9 } } }).jpeg().toBuffer() },
    })),
  );
}

const ids = (samples: readonly LesionSample[], order: readonly number[]) => order.map((i) => samples[i].patientId);

/** True when each patient's positions in `order` are consecutive. */
function contiguous(patientOfPosition: readonly string[]): boolean {
  const closed = new Set<string>();
  for (let i = 0; i < patientOfPosition.length; i++) {
    const id = patientOfPosition[i];
    if (id === '') continue;
    if (closed.has(id)) return false;
    if (patientOfPosition[i + 1] !== id) closed.add(id);
  }
  return true;
}

async function all(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

describe('groupByPatient', () => {
  const patients = ['A', 'B', 'A', '', 'C', 'B', '', 'A'];
  let samples: LesionSample[];
  beforeAll(async () => (samples = await samplesOf(patients)));

  test('unshuffled: patients in order of their first image, images in their order; no id = alone', () => {
    const runs = groupByPatient(samples, samples.map((_, i) => i));
    expect(runs).toEqual([[0, 2, 7], [1, 5], [3], [4], [6]]);
  });

  test('shuffled: a seeded permutation with every patient contiguous, other seeds another order', () => {
    const order = samples.map((_, i) => i);
    const shuffled = (seed: number) => groupByPatient(samples, order, { random: mulberry32(seed), runLength: 8 }).flat();
    const a = shuffled(1);
    expect(shuffled(1)).toEqual(a);
    expect([...a].sort((x, y) => x - y)).toEqual(order);
    expect(contiguous(ids(samples, a))).toBe(true);
    expect([2, 3, 4, 5].map(shuffled).some((o) => o.join() !== a.join())).toBe(true);
  });

  test('shuffled: a patient with more images than runLength comes in runs of at most runLength, all of its own', () => {
    const many = ['A', 'A', 'A', 'A', 'A', 'B', 'C', 'C'];
    const runs = groupByPatient(many.map((patientId) => ({ patientId }) as LesionSample), many.map((_, i) => i), { random: mulberry32(3), runLength: 2 });
    expect(runs.every((run) => run.length >= 1 && run.length <= 2 && new Set(run.map((i) => many[i])).size === 1)).toBe(true);
    expect(runs.filter((run) => many[run[0]] === 'A').map((run) => run.length).sort()).toEqual([1, 2, 2]);
    expect(runs.flat().sort((x, y) => x - y)).toEqual(many.map((_, i) => i));
  });
});

describe('defaultPatientRunLength', () => {
  test('a quarter of the batch, at least 2', () => {
    expect([1, 4, 8, 9, 32, 128].map(defaultPatientRunLength)).toEqual([2, 2, 2, 3, 8, 32]);
  });
});

describe('patientGroups', () => {
  test('equal numbers for one patient, distinct ones for other patients and for samples without an id', async () => {
    const samples = await samplesOf(['X', '', 'Y', 'X', '', 'Y', 'Z']);
    const groups = Array.from(patientGroups(samples));
    expect(groups[0]).toBe(groups[3]);
    expect(groups[2]).toBe(groups[5]);
    expect(new Set(groups).size).toBe(5); // X, Y, Z and the two alone
    expect(groups[1]).not.toBe(groups[4]);
  });
});

describe('loader with groupPatients', () => {
  // 10 patients of 2-3 images, interleaved, and 2 samples without a patient id.
  const patients = Array.from({ length: 26 }, (_, i) => (i >= 24 ? '' : `P${(i * 7) % 10}`));
  let samples: LesionSample[];
  beforeAll(async () => (samples = await samplesOf(patients)));
  const base: LoaderOptions = { batchSize: 5, imageSize: 16, shuffle: true, seed: 9, dropLast: false, prefetchBatches: 2, decodeConcurrency: 2, groupPatients: true };

  test('a shuffled epoch keeps each patient together (runs as long as its patients), seeded, and covers every image once', async () => {
    const options = { ...base, patientRunLength: 3 };
    const loader = createLoader(samples, options);
    const order = loader.epochOrder(2);
    expect(contiguous(ids(samples, order))).toBe(true);
    expect(createLoader(samples, options).epochOrder(2)).toEqual(order);
    expect(loader.epochOrder(3)).not.toEqual(order);
    expect([...order].sort((x, y) => x - y)).toEqual(samples.map((_, i) => i));
    const batches = await all(loader.epoch(2));
    expect(batches.flatMap((b) => b.samples.map((s) => s.imageName))).toEqual(order.map((i) => samples[i].imageName));
    expect(batches.every((b) => b.batchSize === 5 || b === batches[batches.length - 1])).toBe(true);
    // By default a batch of 5 takes at most 2 images of a patient together: patients of 3 are cut.
    expect(contiguous(ids(samples, createLoader(samples, base).epochOrder(2)))).toBe(false);
  });

  test('an unshuffled (scoring) loader: patients in the order of their first image, each one contiguous, in full batches; fromBatch', async () => {
    const loader = createLoader(samples, { ...base, shuffle: false });
    const order = loader.epochOrder(0);
    expect(contiguous(ids(samples, order))).toBe(true);
    expect([...order].sort((x, y) => x - y)).toEqual(samples.map((_, i) => i));
    // Patients appear as their first images do in the samples; within a patient, images keep their order.
    const firstSeen = [...new Set(samples.map((s) => s.patientId).filter((id) => id !== ''))];
    expect([...new Set(ids(samples, order).filter((id) => id !== ''))]).toEqual(firstSeen);
    for (const id of firstSeen) {
      const positions = order.filter((i) => samples[i].patientId === id);
      expect(positions).toEqual([...positions].sort((x, y) => x - y));
    }
    expect(loader.epochOrder(1)).toEqual(order);
    const batches = await all(loader.epoch(0));
    expect(batches).toHaveLength(loader.batchesPerEpoch);
    expect(batches.map((b) => b.batchSize)).toEqual([5, 5, 5, 5, 5, 1]);
    expect(batches.flatMap((b) => b.samples.map((s) => s.imageName))).toEqual(order.map((i) => samples[i].imageName));
    const resumed = await all(loader.epoch(0, { fromBatch: 2 }));
    expect(resumed.map((b) => b.samples.map((s) => s.imageName))).toEqual(batches.slice(2).map((b) => b.samples.map((s) => s.imageName)));
  });

  test('refuses options it cannot honour, naming them', () => {
    expect(() => createLoader(samples, { ...base, positiveFraction: 0.5 })).toThrow('Expected no positiveFraction with groupPatients: repeated positives would each be scored in the context of their own copies');
    expect(() => createLoader(samples, { ...base, groupPatients: 'yes' as unknown as boolean })).toThrow('Expected boolean for groupPatients but received string');
    expect(() => createLoader(samples, { ...base, shuffle: false, patientRunLength: 2 })).toThrow('Expected patientRunLength only with groupPatients and shuffle (it shapes training epochs)');
    expect(() => createLoader(samples, { ...base, patientRunLength: 0 })).toThrow('Expected positive integer for patientRunLength but received 0');
  });
});
