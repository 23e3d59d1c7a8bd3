import { operatingPointAtThreshold, operatingPointForSensitivity, youdenOperatingPoint } from '../../src/metrics';
import { randomCase } from './brute';

// 4 melanomas, 6 benign.
const y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
const s = [0.9, 0.8, 0.6, 0.3, 0.7, 0.5, 0.4, 0.2, 0.1, 0.05];

describe('operating points: hand-worked case', () => {
  test('at threshold 0.5 (score >= threshold is positive)', () => {
    expect(operatingPointAtThreshold(y, s, 0.5)).toEqual({
      threshold: 0.5, tp: 3, fp: 2, tn: 4, fn: 1,
      sensitivity: 0.75, specificity: 4 / 6, precision: 3 / 5, npv: 4 / 5, f1: 6 / 9, youdenJ: 0.75 + 4 / 6 - 1,
    });
  });

  test('target sensitivity 0.95 needs all four melanomas: threshold 0.3', () => {
    const p = operatingPointForSensitivity(y, s);
    expect(p).toMatchObject({ threshold: 0.3, tp: 4, fn: 0, fp: 3, tn: 3, sensitivity: 1, specificity: 0.5 });
  });

  test('target sensitivity reached exactly (0.75) picks the most specific threshold', () => {
    expect(operatingPointForSensitivity(y, s, 0.75)).toMatchObject({ threshold: 0.6, tp: 3, fp: 1 });
  });

  test('Youden optimum: J = 0.75 - 1/6 at threshold 0.6', () => {
    const p = youdenOperatingPoint(y, s);
    expect(p.threshold).toBe(0.6);
    expect(p.youdenJ).toBeCloseTo(0.75 - 1 / 6, 15);
  });

  test('undefined ratios are null, not NaN', () => {
    const p = operatingPointAtThreshold(y, s, 2);
    expect(p).toMatchObject({ tp: 0, fp: 0, precision: null, sensitivity: 0, specificity: 1, f1: 0 });
    const q = operatingPointAtThreshold(y, s, -1);
    expect(q).toMatchObject({ tn: 0, fn: 0, npv: null, sensitivity: 1, specificity: 0 });
  });
});

describe('operating points: random cases against an exhaustive threshold scan', () => {
  for (const seed of [1, 2, 3, 4]) {
    test(`seed ${seed}`, () => {
      const { y: yy, s: ss } = randomCase(seed, 250, 25);
      const points = [...new Set(ss)].sort((a, b) => b - a).map((t) => operatingPointAtThreshold(yy, ss, t));
      const bestJ = Math.max(...points.map((p) => p.youdenJ!));
      const youden = youdenOperatingPoint(yy, ss);
      expect(youden.youdenJ).toBeCloseTo(bestJ, 14);
      expect(youden.threshold).toBe(points.find((p) => p.youdenJ! >= bestJ - 1e-15)!.threshold);
      for (const target of [0.5, 0.9, 0.95, 1]) {
        const expected = points.find((p) => p.sensitivity! >= target)!;
        expect(operatingPointForSensitivity(yy, ss, target)).toEqual(expected);
      }
    });
  }
});

describe('EXPECTED FAILURE: bad parameters', () => {
  test('target sensitivity out of range', () => {
    expect(() => operatingPointForSensitivity(y, s, 0)).toThrow(new RangeError('Expected targetSensitivity in (0, 1] but received 0'));
    expect(() => operatingPointForSensitivity(y, s, 1.5)).toThrow('Expected targetSensitivity in (0, 1] but received 1.5');
  });
  test('NaN threshold', () => {
    expect(() => operatingPointAtThreshold(y, s, NaN)).toThrow(new RangeError('Expected a number for threshold but received NaN'));
  });
  test('one class', () => {
    expect(() => youdenOperatingPoint([0, 0], [1, 2])).toThrow('Youden operating point is undefined when one class is absent');
  });
});
