import { bootstrapAuc, createRng, delongCi, partialAuc, rocAuc } from '../../src/metrics';
import { randomCase } from './brute';

describe('bootstrapAuc', () => {
  const { y, s } = randomCase(3, 400, 50, 0.3, 0.2);

  test('seeded: same seed same interval, different seed different interval', () => {
    const a = bootstrapAuc(y, s, { replicates: 200, seed: 7 });
    const b = bootstrapAuc(y, s, { replicates: 200, seed: 7 });
    const c = bootstrapAuc(y, s, { replicates: 200, seed: 8 });
    expect(a).toEqual(b);
    expect(a.auc.ci).not.toEqual(c.auc.ci);
    expect(a.auc.estimate).toBe(rocAuc(y, s));
    expect(a.partialAuc.estimate).toBe(partialAuc(y, s));
    expect(a.unit).toBe('image');
  });

  test('interval brackets the estimate and agrees roughly with DeLong', () => {
    const b = bootstrapAuc(y, s, { replicates: 1000, seed: 1 });
    const d = delongCi(y, s);
    expect(b.auc.ci[0]).toBeLessThan(b.auc.estimate);
    expect(b.auc.ci[1]).toBeGreaterThan(b.auc.estimate);
    expect(Math.abs(b.auc.se! - d.se) / d.se).toBeLessThan(0.15);
    expect(b.partialAuc.ci[0]).toBeGreaterThanOrEqual(0);
    expect(b.partialAuc.ci[1]).toBeLessThanOrEqual(0.2);
  });

  test('replicate AUCs equal the AUC of the explicitly resampled data', () => {
    // Re-implement one replicate by hand with the same PRNG stream and compare.
    const small = randomCase(4, 40, 6);
    const rng = createRng(99);
    const drawn = Array.from({ length: 40 }, () => Math.floor(rng() * 40));
    const yy = drawn.map((i) => small.y[i]);
    const ss = drawn.map((i) => small.s[i]);
    const b = bootstrapAuc(small.y, small.s, { replicates: 1, seed: 99, level: 0.5 });
    expect(b.validReplicates).toBe(1);
    expect(b.auc.ci[0]).toBeCloseTo(rocAuc(yy, ss), 14);
    expect(b.partialAuc.ci[0]).toBeCloseTo(partialAuc(yy, ss), 14);
  });

  test('patient-level: patients with k identical images resample like one image each', () => {
    // Patient p has 3 identical copies of sample p; resampling patients must then give the same
    // replicate AUCs as resampling the de-duplicated images with the same seed.
    const small = randomCase(5, 80, 8);
    const y3: number[] = [];
    const s3: number[] = [];
    const pid: string[] = [];
    small.y.forEach((v, i) => {
      for (let k = 0; k < 3; k++) {
        y3.push(v);
        s3.push(small.s[i]);
        pid.push(`P${i}`);
      }
    });
    const byPatient = bootstrapAuc(y3, s3, { groups: pid, replicates: 300, seed: 5 });
    const byImage = bootstrapAuc(small.y, small.s, { replicates: 300, seed: 5 });
    expect(byPatient.unit).toBe('patient');
    expect(byPatient.units).toBe(80);
    expect(byPatient.auc.ci[0]).toBeCloseTo(byImage.auc.ci[0], 14);
    expect(byPatient.auc.ci[1]).toBeCloseTo(byImage.auc.ci[1], 14);
    // Resampling the 240 images independently understates the uncertainty.
    const naive = bootstrapAuc(y3, s3, { replicates: 300, seed: 5 });
    expect(naive.auc.ci[1] - naive.auc.ci[0]).toBeLessThan(0.8 * (byPatient.auc.ci[1] - byPatient.auc.ci[0]));
  });

  test('replicates drawing a single class are skipped and counted', () => {
    const b = bootstrapAuc([1, 0, 0, 0, 0, 0], [0.9, 0.1, 0.2, 0.3, 0.4, 0.5], { replicates: 200, seed: 2 });
    expect(b.validReplicates).toBeLessThan(200);
    expect(b.validReplicates).toBeGreaterThan(0);
  });

  test('EXPECTED FAILURE: bad options', () => {
    expect(() => bootstrapAuc(y, s, { seed: -1 })).toThrow(new RangeError('Expected an integer seed in [0, 4294967295] but received -1'));
    expect(() => bootstrapAuc(y, s, { replicates: 0 })).toThrow(new RangeError('Expected positive integer for replicates but received 0'));
    expect(() => bootstrapAuc(y, s, { groups: ['a'] })).toThrow('labels and groups must have the same length but received 400 labels and 1 groups');
    expect(() => bootstrapAuc([0, 0], [1, 2])).toThrow('Bootstrap AUC is undefined when one class is absent');
    expect(() => bootstrapAuc(y, s, { iterations: 50 } as object)).toThrow(new TypeError("Unknown option 'iterations' of bootstrapAuc (options: groups, replicates, seed, level, minTpr)"));
  });
});
