/** Fold invariants: no patient in two folds, positives within 1 of ideal, balanced images, seeded, CSV round trip. */
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DataError } from '../src/data/errors';
import { openDataset } from '../src/data/isic';
import { mulberry32 } from '../src/data/random';
import { FoldSample, assignFileFolds, fileFolds, readFoldsCsv, splitByFold, stratifiedGroupKFold, writeFoldsCsv } from '../src/folds';
import { UDA1, describeWithUda1 } from './data/helpers';

/** A SIIM-ISIC-like set: patients with 1..maxImages images, ~2.5% positive images. */
function syntheticSet(patients: number, maxImages: number, seed: number): FoldSample[] {
  const random = mulberry32(seed);
  const out: FoldSample[] = [];
  for (let p = 0; p < patients; p++) {
    const n = 1 + Math.floor(random() * maxImages);
    for (let i = 0; i < n; i++) out.push({ imageName: `ISIC_${p}_${i}`, patientId: `IP_${p}`, target: random() < 0.025 ? 1 : 0 });
  }
  return out;
}

function foldStats(samples: FoldSample[], folds: number[], k: number) {
  const positives = new Array(k).fill(0);
  const images = new Array(k).fill(0);
  const patients = new Array(k).fill(null).map(() => new Set<string>());
  samples.forEach((s, i) => {
    images[folds[i]]++;
    if (s.target === 1) positives[folds[i]]++;
    patients[folds[i]].add(s.patientId);
  });
  return { positives, images, patients };
}

describe('stratifiedGroupKFold', () => {
  test('images without a patient id are each their own patient, not one patient of all of them', () => {
    const samples: FoldSample[] = Array.from({ length: 40 }, (_, i) => ({ imageName: `I${i}`, patientId: i < 20 ? '' : `P${i % 10}`, target: i % 5 === 0 ? 1 : 0 }));
    const folds = stratifiedGroupKFold(samples, 5, 7);
    const withoutId = folds.filter((a) => a.patientId === '').map((a) => a.fold);
    expect(new Set(withoutId).size).toBe(5); // spread over every fold
    // Images that share an id still share a fold.
    for (let p = 0; p < 10; p++) expect(new Set(folds.filter((a) => a.patientId === `P${p}`).map((a) => a.fold)).size).toBe(1);
  });

  const samples = syntheticSet(600, 12, 5);
  const k = 5;
  const assignment = stratifiedGroupKFold(samples, k, 42);
  const folds = assignment.map((a) => a.fold);
  const { positives, images, patients } = foldStats(samples, folds, k);

  it('keeps every patient in one fold', () => {
    const foldOf = new Map<string, number>();
    samples.forEach((s, i) => {
      expect(foldOf.get(s.patientId) ?? folds[i]).toBe(folds[i]);
      foldOf.set(s.patientId, folds[i]);
    });
    expect(assignment.map((a) => a.imageName)).toEqual(samples.map((s) => s.imageName));
  });

  it("puts each fold's positive count within 1 of the ideal", () => {
    const total = positives.reduce((a, b) => a + b, 0);
    // The set is a real test of the rule: some patients have 2+ positives.
    const perPatient = new Map<string, number>();
    for (const s of samples) if (s.target === 1) perPatient.set(s.patientId, (perPatient.get(s.patientId) ?? 0) + 1);
    expect(Math.max(...perPatient.values())).toBeGreaterThanOrEqual(2);
    for (const p of positives) expect(Math.abs(p - total / k)).toBeLessThan(1);
  });

  it('balances images and the images-per-patient mix', () => {
    expect(Math.max(...images) - Math.min(...images)).toBeLessThanOrEqual(12);
    // Patients with many images are spread as evenly as the rest.
    const big = patients.map((set) => [...set].filter((p) => samples.filter((s) => s.patientId === p).length >= 8).length);
    expect(Math.max(...big) - Math.min(...big)).toBeLessThanOrEqual(2);
    const counts = patients.map((s) => s.size);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(6);
  });

  it('is seeded: same seed, same folds; another seed, other folds', () => {
    expect(stratifiedGroupKFold(samples, k, 42)).toEqual(assignment);
    expect(stratifiedGroupKFold(samples, k, 43).map((a) => a.fold)).not.toEqual(folds);
  });

  it('reaches the within-1 spread where greedy placement alone cannot (patients with 3,3,2,2,2 positives, 2 folds)', () => {
    const set: FoldSample[] = [];
    [3, 3, 2, 2, 2].forEach((n, p) => {
      for (let i = 0; i < n; i++) set.push({ imageName: `P${p}_${i}`, patientId: `P${p}`, target: 1 });
    });
    for (let i = 0; i < 20; i++) set.push({ imageName: `N${i}`, patientId: `N${i % 7}`, target: 0 });
    for (const seed of [0, 1, 2, 3]) {
      const a = stratifiedGroupKFold(set, 2, seed);
      expect(foldStats(set, a.map((x) => x.fold), 2).positives).toEqual([6, 6]);
    }
  });

  it('rejects k < 2 and more folds than patients (BAD CALL)', () => {
    expect(() => stratifiedGroupKFold(samples, 1, 0)).toThrow(new RangeError('Expected integer >= 2 for k but received 1'));
    expect(() => stratifiedGroupKFold(samples.slice(0, 3), 5, 0)).toThrow(new RangeError('Cannot make folds from 1 patient: cross-validation needs at least 2'));
    expect(() => stratifiedGroupKFold(samples.slice(0, 12), 5, 0)).toThrow(/^Cannot make 5 folds from [234] patients: use k <= [234]$/);
  });

  it('splitByFold gives disjoint train/valid sets covering everything', () => {
    const lesions = samples.map((s) => ({ ...s, sex: null, ageApprox: null, anatomSite: null, diagnosis: null, image: { kind: 'memory' as const, bytes: Buffer.alloc(0) } }));
    const { train, valid } = splitByFold(lesions, assignment, 2);
    expect(train.length + valid.length).toBe(samples.length);
    expect(valid.length).toBe(images[2]);
    const validPatients = new Set(valid.map((s) => s.patientId));
    expect(train.some((s) => validPatients.has(s.patientId))).toBe(false);
    // A fold the assignment does not have (k itself, as a 1-based loop ends) would validate on nothing.
    expect(() => splitByFold(lesions, assignment, k)).toThrow(new RangeError(`Expected one of the assignment's folds (0, 1, 2, 3, 4; numbered from 0) for fold but received ${k}`));
    expect(() => splitByFold(lesions, assignment, '0' as unknown as number)).toThrow(/for fold but received '0' of type string$/);
    expect(() => splitByFold([], [], 0)).toThrow(new RangeError('Expected an assignment of folds but received an empty one: make it with stratifiedGroupKFold (or assignFileFolds) from these samples'));
  });

  it('an empty set or one patient: no folds, said plainly', () => {
    expect(() => stratifiedGroupKFold([], 5, 0)).toThrow(new RangeError('Cannot make folds from 0 patients: cross-validation needs at least 2'));
  });
});

describe('fold CSV', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'melanoma-folds-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips image_name, patient_id, target (null included), fold', async () => {
    const samples: FoldSample[] = [...syntheticSet(30, 3, 9), { imageName: 'ISIC_test,1', patientId: 'IP "q"', target: null }];
    const assignment = stratifiedGroupKFold(samples, 3, 1);
    const file = path.join(dir, 'folds.csv');
    await writeFoldsCsv(file, assignment);
    expect(await readFoldsCsv(file)).toEqual(assignment);
  });

  it('refuses a CSV that puts a patient in two folds', async () => {
    const file = path.join(dir, 'bad.csv');
    writeFileSync(file, 'image_name,patient_id,target,fold\nA,P1,0,0\nB,P1,1,2\n');
    const err = await readFoldsCsv(file).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toBe(`${file} line 3: patient P1 is in folds 0 and 2. A fold CSV has image_name,patient_id,target,fold; regenerate it`);
  });

  it('refuses a bad fold value', async () => {
    const file = path.join(dir, 'bad2.csv');
    writeFileSync(file, 'image_name,patient_id,target,fold\nA,P1,0,x\n');
    await expect(readFoldsCsv(file)).rejects.toThrow(`${file} line 2: fold must be an integer >= 0 but is 'x'`);
  });
});

describe('fileFolds', () => {
  const files = Array.from({ length: 15 }, (_, i) => `/d/train${String(i).padStart(2, '0')}-2071.tfrec`);

  it('15 files -> 5 folds of 3 whole files; seeded shuffle; name order without a seed', () => {
    const seeded = fileFolds(files, 5, 7);
    const perFold = [0, 1, 2, 3, 4].map((f) => [...seeded].filter(([, g]) => g === f).length);
    expect(perFold).toEqual([3, 3, 3, 3, 3]);
    expect(fileFolds(files, 5, 7)).toEqual(seeded);
    expect([...fileFolds(files, 5, 8)].sort()).not.toEqual([...seeded].sort());
    expect([...fileFolds(files.slice(0, 5), 5)].map(([f, g]) => [path.basename(f), g])).toEqual(
      [0, 1, 2, 3, 4].map((i) => [`train0${i}-2071.tfrec`, i]),
    );
  });
});

describeWithUda1('folds on uda1-dev', () => {
  it('file folds: fold k = file k; patient folds: 5 x 60 images, positives within 1 of 83/5', async () => {
    const ds = await openDataset(UDA1);
    const byFile = assignFileFolds(ds.samples, 5);
    byFile.forEach((a, i) => {
      const s = ds.samples[i];
      expect(s.image.kind === 'tfrecord' && s.image.file.endsWith(`train0${a.fold}-60.tfrec`)).toBe(true);
    });
    const folds = stratifiedGroupKFold(ds.samples, 5, 0).map((a) => a.fold);
    const { positives, images } = foldStats(ds.samples, folds, 5);
    expect(images).toEqual([60, 60, 60, 60, 60]);
    for (const p of positives) expect(Math.abs(p - 83 / 5)).toBeLessThan(1);
  });
});
