import { rocAuc, rocAucOrNull, rocCurve, trapezoidArea, UndefinedMetricError } from '../../src/metrics';
import { bruteAuc, bruteRoc, randomCase } from './brute';

describe('rocAuc: hand-worked cases', () => {
  test('perfect, reversed and fully tied rankings', () => {
    expect(rocAuc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])).toBe(1);
    expect(rocAuc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])).toBe(0);
    expect(rocAuc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])).toBe(0.5);
  });

  test('sklearn documentation example: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75', () => {
    expect(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])).toBe(0.75);
  });

  test('ties between classes count 1/2 (midranks)', () => {
    // Pairs (pos, neg): (0.5, 0.5) tie = 1/2, (0.5, 0.2) = 1, (0.9, 0.5) = 1, (0.9, 0.2) = 1 -> 3.5/4.
    expect(rocAuc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.2])).toBe(0.875);
    // Midrank formula: ranks of [0.2, 0.5, 0.5, 0.9] are 1, 2.5, 2.5, 4; positives 2.5 + 4 = 6.5;
    // (6.5 - 2*3/2) / (2*2) = 0.875.
  });

  test('-0 and +0 are one score', () => {
    expect(rocAuc([1, 0], [-0, 0])).toBe(0.5);
  });

  test('accepts typed arrays and leaves inputs unchanged', () => {
    const y = Uint8Array.from([1, 0, 1, 0, 0]);
    const s = Float64Array.from([0.3, 0.1, 0.2, 0.4, 0.2]);
    const copy = Float64Array.from(s);
    expect(rocAuc(y, s)).toBeCloseTo(bruteAuc([...y], [...s]), 15);
    expect([...s]).toEqual([...copy]);
  });
});

describe('rocAuc: random cases with ties against the O(n^2) pairwise definition', () => {
  for (const [seed, n, levels] of [
    [1, 10, 3], [2, 57, 5], [3, 200, 10], [4, 500, 7], [5, 999, 1000], [6, 300, 2], [7, 1500, 50],
  ] as const) {
    test(`seed ${seed}, n=${n}, ${levels} score levels`, () => {
      const { y, s } = randomCase(seed, n, levels);
      expect(Math.abs(rocAuc(y, s) - bruteAuc(y, s))).toBeLessThanOrEqual(1e-12);
    });
  }
  test('200 small random cases (n 2..40) agree to 1e-12', () => {
    for (let seed = 100; seed < 300; seed++) {
      const { y, s } = randomCase(seed, 2 + (seed % 39), 1 + (seed % 6), 0.5, 0.1);
      const diff = Math.abs(rocAuc(y, s) - bruteAuc(y, s));
      if (diff > 1e-12) throw new Error(`seed ${seed}: differs by ${diff}`);
    }
  });
});

describe('rocCurve', () => {
  test('hand case: one point per distinct score, ties as one diagonal segment', () => {
    const c = rocCurve([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.2]);
    expect([...c.thresholds]).toEqual([Infinity, 0.9, 0.5, 0.2]);
    expect([...c.tpr]).toEqual([0, 0.5, 1, 1]);
    expect([...c.fpr]).toEqual([0, 0, 0.5, 1]);
  });

  test('matches direct counting; trapezoid area equals the AUC', () => {
    for (const seed of [11, 12, 13]) {
      const { y, s } = randomCase(seed, 300, 20);
      const c = rocCurve(y, s);
      const b = bruteRoc(y, s);
      expect([...c.thresholds]).toEqual(b.thr);
      expect([...c.fpr]).toEqual(b.fpr);
      expect([...c.tpr]).toEqual(b.tpr);
      expect(Math.abs(trapezoidArea(c.fpr, c.tpr) - bruteAuc(y, s))).toBeLessThan(1e-12);
    }
  });

  test('dropIntermediate keeps the corners only and the same area', () => {
    const { y, s } = randomCase(21, 400, 40);
    const full = rocCurve(y, s);
    const lean = rocCurve(y, s, { dropIntermediate: true });
    expect(lean.fpr.length).toBeLessThan(full.fpr.length);
    expect(lean.fpr[lean.fpr.length - 1]).toBe(1);
    expect(lean.tpr[lean.tpr.length - 1]).toBe(1);
    expect(Math.abs(trapezoidArea(lean.fpr, lean.tpr) - trapezoidArea(full.fpr, full.tpr))).toBeLessThan(1e-12);
    // every kept point is on the full curve
    for (let i = 0; i < lean.fpr.length; i++) {
      const k = [...full.thresholds].indexOf(lean.thresholds[i]);
      expect(k).toBeGreaterThanOrEqual(0);
      expect(full.fpr[k]).toBe(lean.fpr[i]);
      expect(full.tpr[k]).toBe(lean.tpr[i]);
    }
    // Cumulative (tp, fp): (1,0) (2,0) (3,0) (3,1); (2,0) lies inside a straight run and goes,
    // as in sklearn (fps [0,0,0,1], tps [1,2,3,3] -> kept indices 0, 2, 3).
    expect([...rocCurve([1, 1, 1, 0], [4, 3, 2, 1], { dropIntermediate: true }).thresholds]).toEqual([Infinity, 4, 2, 1]);
  });
});

describe('EXPECTED FAILURE: bad inputs', () => {
  test('length mismatch', () => {
    expect(() => rocAuc([0, 1, 1], [0.1, 0.2])).toThrow(
      new RangeError('labels and scores must have the same length but received 3 labels and 2 scores'),
    );
  });
  test('NaN score', () => {
    expect(() => rocAuc([0, 1, 1], [0.1, NaN, 0.3])).toThrow(new RangeError('scores[1] must be a finite number but received NaN'));
  });
  test('infinite score', () => {
    expect(() => rocAuc([0, 1], [0.1, Infinity])).toThrow(new RangeError('scores[1] must be a finite number but received Infinity'));
  });
  test('label not 0/1', () => {
    expect(() => rocAuc([0, 2], [0.1, 0.2])).toThrow(new RangeError('labels[1] must be 0 or 1 but received 2'));
  });
  test('not an array', () => {
    expect(() => rocAuc([0, 1], 5 as unknown as number[])).toThrow(TypeError);
    expect(() => rocAuc([0, 1], 5 as unknown as number[])).toThrow('Expected an array or typed array for scores but received 5');
  });
  test('one class absent: UndefinedMetricError (a RangeError), never 0.5 or NaN', () => {
    const msg =
      'ROC AUC is undefined when one class is absent: expected at least one positive (label 1) and one negative (label 0) but received 0 positives and 3 negatives';
    expect(() => rocAuc([0, 0, 0], [0.1, 0.2, 0.3])).toThrow(new RangeError(msg));
    expect(() => rocAuc([0, 0, 0], [0.1, 0.2, 0.3])).toThrow(UndefinedMetricError);
    expect(rocAucOrNull([0, 0, 0], [0.1, 0.2, 0.3])).toEqual({ auc: null, reason: msg });
    expect(rocAucOrNull([1, 0], [0.9, 0.1])).toEqual({ auc: 1, reason: null });
    expect(() => rocAuc([1], [0.1])).toThrow('received 1 positive and 0 negatives');
    expect(() => rocAuc([], [])).toThrow('received 0 positives and 0 negatives');
  });
  test('rocAucOrNull still throws for malformed input', () => {
    expect(() => rocAucOrNull([0, 1], [NaN, 1])).toThrow('scores[0] must be a finite number but received NaN');
  });
});

// Speed (10^6 scores well under a second) is measured by the benchmark `node dist/bench/auc-bench.js`,
// which CI runs and prints: timing assertions do not belong in tests on a shared machine.
