import { delongCi, delongComponents, delongTest, normalCdf, normalQuantile, rocAuc, UndefinedMetricError, zForLevel } from '../../src/metrics';
import { bruteAuc, bruteComponents, randomCase, sampleVariance } from './brute';

describe('DeLong variance against a direct O(n^2) computation of V10/V01', () => {
  for (const [seed, n, levels] of [[1, 30, 4], [2, 120, 10], [3, 400, 1000], [4, 250, 3]] as const) {
    test(`seed ${seed}, n=${n}, ${levels} levels`, () => {
      const { y, s } = randomCase(seed, n, levels);
      const direct = bruteComponents(y, s);
      const fast = delongComponents(y, s);
      expect(fast.v10.length).toBe(direct.v10.length);
      direct.v10.forEach((v, i) => expect(Math.abs(fast.v10[i] - v)).toBeLessThan(1e-12));
      direct.v01.forEach((v, j) => expect(Math.abs(fast.v01[j] - v)).toBeLessThan(1e-12));
      const mean10 = direct.v10.reduce((a, b) => a + b, 0) / direct.v10.length;
      const mean01 = direct.v01.reduce((a, b) => a + b, 0) / direct.v01.length;
      // AUC = mean(V10) = mean(V01)
      expect(Math.abs(mean10 - bruteAuc(y, s))).toBeLessThan(1e-12);
      expect(Math.abs(mean01 - bruteAuc(y, s))).toBeLessThan(1e-12);
      const variance = sampleVariance(direct.v10) / direct.v10.length + sampleVariance(direct.v01) / direct.v01.length;
      const r = delongCi(y, s);
      expect(Math.abs(r.variance - variance)).toBeLessThan(1e-14);
      expect(r.se).toBeCloseTo(Math.sqrt(variance), 14);
      expect(r.auc).toBe(rocAuc(y, s));
      const z = 1.959963984540054;
      expect(r.ci[0]).toBeCloseTo(Math.max(0, r.auc - z * Math.sqrt(variance)), 14);
      expect(r.ci[1]).toBeCloseTo(Math.min(1, r.auc + z * Math.sqrt(variance)), 14);
    });
  }

  test('hand case: y=[1,1,0,0], s=[0.9,0.4,0.5,0.1]', () => {
    // V10 = [1, 0.5], V01 = [0.5, 1] (negative 0.5 is beaten by 0.9 only); AUC 0.75;
    // var = 0.125/2 + 0.125/2 = 0.125.
    const r = delongCi([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]);
    expect(r.auc).toBe(0.75);
    expect(r.variance).toBeCloseTo(0.125, 15);
    expect(r.ci[1]).toBe(1); // clipped
  });

  test('other confidence levels widen/narrow the interval', () => {
    const { y, s } = randomCase(9, 300, 50);
    const r90 = delongCi(y, s, 0.9);
    const r99 = delongCi(y, s, 0.99);
    expect(r90.ci[1] - r90.ci[0]).toBeCloseTo(2 * 1.6448536269514722 * r90.se, 7);
    expect(r99.ci[1] - r99.ci[0]).toBeCloseTo(2 * 2.5758293035489004 * r99.se, 7);
  });

  test('EXPECTED FAILURE: fewer than two samples of a class', () => {
    expect(() => delongCi([1, 0, 0], [0.3, 0.2, 0.1])).toThrow(
      new RangeError(
        'DeLong variance is undefined with fewer than 2 samples of a class: expected at least 2 positives and 2 negatives but received 1 positive and 2 negatives',
      ),
    );
    expect(() => delongCi([0, 0], [0.3, 0.2])).toThrow(UndefinedMetricError);
  });
});

describe('DeLong test for two correlated AUCs', () => {
  test('matches the direct covariance computation', () => {
    const { y, s } = randomCase(31, 300, 30);
    const r = (() => {
      let x = 5;
      return () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 4294967296);
    })();
    const sB = s.map((v) => Math.round((v + (r() - 0.5) * 0.4) * 20) / 20);
    const A = bruteComponents(y, s);
    const B = bruteComponents(y, sB);
    const cov = (a: number[], b: number[]): number => {
      const ma = a.reduce((p, q) => p + q, 0) / a.length;
      const mb = b.reduce((p, q) => p + q, 0) / b.length;
      return a.reduce((acc, v, i) => acc + (v - ma) * (b[i] - mb), 0) / (a.length - 1);
    };
    const m = A.v10.length;
    const n = A.v01.length;
    const varDiff =
      (cov(A.v10, A.v10) + cov(B.v10, B.v10) - 2 * cov(A.v10, B.v10)) / m + (cov(A.v01, A.v01) + cov(B.v01, B.v01) - 2 * cov(A.v01, B.v01)) / n;
    const t = delongTest(y, s, sB);
    expect(t.aucA).toBeCloseTo(bruteAuc(y, s), 13);
    expect(t.aucB).toBeCloseTo(bruteAuc(y, sB), 13);
    expect(t.se).toBeCloseTo(Math.sqrt(varDiff), 13);
    expect(t.z).toBeCloseTo((bruteAuc(y, s) - bruteAuc(y, sB)) / Math.sqrt(varDiff), 10);
    // two-sided normal p-value of that z
    expect(t.pValue).toBeCloseTo(2 * normalCdf(-Math.abs(t.z)), 12);
    expect(delongTest(y, sB, s).pValue).toBeCloseTo(t.pValue, 12);
    expect(delongTest(y, sB, s).z).toBeCloseTo(-t.z, 12);
  });

  test('a reversed copy of a strong model is significantly worse', () => {
    const { y, s } = randomCase(41, 200, 100, 0.4, 0.6);
    const t = delongTest(y, s, s.map((v) => -v));
    expect(t.aucA).toBeGreaterThan(0.8);
    expect(t.pValue).toBeLessThan(1e-6);
  });

  test('identical scores: difference 0, p = 1; monotone transform gives the same AUC', () => {
    const { y, s } = randomCase(42, 100, 10);
    const t = delongTest(y, s, s.map((v) => Math.exp(3 * v)));
    expect(t.difference).toBe(0);
    expect(t.se).toBe(0);
    expect(t.pValue).toBe(1);
  });

  test('EXPECTED FAILURE: length mismatch names the argument', () => {
    expect(() => delongTest([0, 1, 0, 1], [1, 2, 3, 4], [1, 2, 3])).toThrow(
      new RangeError('labels and scoresB must have the same length but received 4 labels and 3 scoresB'),
    );
    expect(() => delongTest([0, 1, 0, 1], [1, NaN, 3, 4], [1, 2, 3, 4])).toThrow('scoresA[1] must be a finite number but received NaN');
  });
});

describe('normal distribution helpers', () => {
  test('tabulated values', () => {
    expect(normalCdf(1.959963984540054)).toBeCloseTo(0.975, 7);
    expect(normalCdf(0)).toBeCloseTo(0.5, 9);
    expect(normalCdf(-2.5758293035489004)).toBeCloseTo(0.005, 8);
    expect(normalQuantile(0.975)).toBeCloseTo(1.959963984540054, 8);
    expect(normalQuantile(0.001)).toBeCloseTo(-3.090232306167813, 7);
  });
});

test('zForLevel: 0.95 exactly; a level given in percent is refused, not read as p = 48', () => {
  expect(zForLevel(0.95)).toBe(1.959963984540054);
  expect(zForLevel(0.9)).toBeCloseTo(1.6448536, 6);
  expect(() => zForLevel(95)).toThrow(new RangeError('Expected level in (0, 1) but received 95'));
});
