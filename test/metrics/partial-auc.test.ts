import { partialAuc, rocAuc } from '../../src/metrics';
import { bruteRoc, randomCase } from './brute';

/**
 * Independent numerical check: the region under the (unflipped) ROC curve and above TPR = minTpr,
 * integrated over FPR with the trapezoid rule on a fine grid of the piecewise-linear curve.
 */
function numericPartialAuc(y: number[], s: number[], minTpr: number, steps = 100003): number {
  const { fpr, tpr } = bruteRoc(y, s);
  const tprAt = (x: number): number => {
    let k = 0;
    while (k + 1 < fpr.length && fpr[k + 1] <= x) k++;
    if (k + 1 >= fpr.length || fpr[k] === x) return tpr[k];
    return tpr[k] + ((tpr[k + 1] - tpr[k]) * (x - fpr[k])) / (fpr[k + 1] - fpr[k]);
  };
  let area = 0;
  let prev = Math.max(0, tprAt(0) - minTpr);
  for (let i = 1; i <= steps; i++) {
    const cur = Math.max(0, tprAt(i / steps) - minTpr);
    area += (prev + cur) / (2 * steps);
    prev = cur;
  }
  return area;
}

describe('partialAuc (ISIC 2024, TPR >= 0.8)', () => {
  test('hand cases: perfect 0.2, chance diagonal 0.02, reversed 0', () => {
    expect(partialAuc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])).toBeCloseTo(0.2, 15);
    // All tied: the ROC is the diagonal; above y = 0.8 it is a triangle with legs 0.2.
    expect(partialAuc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])).toBeCloseTo(0.02, 15);
    expect(partialAuc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])).toBe(0);
  });

  test('hand case with interpolation at the cut', () => {
    // y=[1,1,0,0], s=[0.9,0.4,0.5,0.1]: ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1).
    // Above TPR .8: from FPR .5 to 1 the curve is at 1 -> 0.5 * 0.2 = 0.1.
    expect(partialAuc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])).toBeCloseTo(0.1, 15);
    // Floor 0.6 (max FPR 0.4): 0.5 * 0.4 = 0.2
    expect(partialAuc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1], 0.6)).toBeCloseTo(0.2, 15);
  });

  test('minTpr 0 gives the full AUC', () => {
    const { y, s } = randomCase(5, 300, 20);
    expect(partialAuc(y, s, 0)).toBeCloseTo(rocAuc(y, s), 14);
  });

  for (const [seed, n, levels, minTpr] of [[1, 60, 5, 0.8], [2, 200, 30, 0.8], [3, 500, 1000, 0.8], [4, 150, 3, 0.8], [5, 300, 50, 0.5], [6, 100, 7, 0.95]] as const) {
    test(`random case with ties (seed ${seed}, n=${n}, ${levels} levels, floor ${minTpr}) matches numerical integration`, () => {
      const { y, s } = randomCase(seed, n, levels);
      const p = partialAuc(y, s, minTpr);
      expect(p).toBeGreaterThanOrEqual(0);
      expect(p).toBeLessThanOrEqual(1 - minTpr);
      expect(Math.abs(p - numericPartialAuc(y, s, minTpr))).toBeLessThan(2e-6);
    });
  }

  test('EXPECTED FAILURE: bad floor and one class', () => {
    expect(() => partialAuc([0, 1], [0.1, 0.2], 1)).toThrow(new RangeError('Expected minTpr in [0, 1) but received 1'));
    expect(() => partialAuc([0, 1], [0.1, 0.2], NaN)).toThrow('Expected minTpr in [0, 1) but received NaN');
    expect(() => partialAuc([1, 1], [0.1, 0.2])).toThrow(
      'Partial AUC is undefined when one class is absent: expected at least one positive (label 1) and one negative (label 0) but received 2 positives and 0 negatives',
    );
  });
});
