/**
 * Logistic regression by Newton's method: it recovers known coefficients, satisfies the
 * optimality conditions, stays finite on separable data with a penalty, and refuses bad input.
 */
import { fitLogisticRegression, linearPredictor, sigmoid } from '../../src/metrics';
import { lcg } from './brute';

function normal(r: () => number): number {
  return (r() + r() + r() + r() + r() + r() - 3) * Math.SQRT2;
}

/** Rows drawn from P(y = 1 | x) = sigmoid(1.2 x0 - 0.5 x1 - 0.7), x1 on a far-from-unit scale. */
function sample(n: number, seed: number): { x: number[][]; y: number[] } {
  const r = lcg(seed);
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    const row = [normal(r), 5 + 3 * (2 * r() - 1)];
    x.push(row);
    y.push(r() < sigmoid(1.2 * row[0] - 0.5 * row[1] - 0.7) ? 1 : 0);
  }
  return { x, y };
}

test('recovers the coefficients that generated the data', () => {
  const { x, y } = sample(20000, 3);
  const fit = fitLogisticRegression(x, y);
  expect(fit.weights[0]).toBeCloseTo(1.2, 1);
  expect(fit.weights[1]).toBeCloseTo(-0.5, 1);
  expect(fit.intercept).toBeCloseTo(-0.7, 0);
  expect(Math.abs(fit.intercept + 0.7)).toBeLessThan(0.25);
  expect(fit.iterations).toBeLessThan(15);
});

test('optimality: without a penalty every score equation is zero; the intercept is never penalised', () => {
  const { x, y } = sample(2000, 5);
  for (const l2 of [0, 1, 100]) {
    const fit = fitLogisticRegression(x, y, { l2 });
    const residual = x.map((row, i) => sigmoid(linearPredictor(fit, row)) - y[i]);
    // The intercept's equation: mean predicted probability = observed prevalence, at any l2.
    expect(Math.abs(residual.reduce((a, b) => a + b, 0))).toBeLessThan(1e-6);
    if (l2 === 0) {
      for (let j = 0; j < 2; j++) expect(Math.abs(residual.reduce((s, e, i) => s + e * x[i][j], 0))).toBeLessThan(1e-6);
    }
  }
  // A larger penalty shrinks the weights.
  const loose = fitLogisticRegression(x, y, { l2: 0 });
  const tight = fitLogisticRegression(x, y, { l2: 500 });
  expect(Math.abs(tight.weights[0])).toBeLessThan(Math.abs(loose.weights[0]));
});

test('separable classes: finite with a penalty, a clear refusal without one', () => {
  const x = [[-2], [-1], [-0.5], [0.5], [1], [2]];
  const y = [0, 0, 0, 1, 1, 1];
  const fit = fitLogisticRegression(x, y, { l2: 1 });
  expect(Number.isFinite(fit.weights[0])).toBe(true);
  expect(fit.weights[0]).toBeGreaterThan(0);
  expect(() => fitLogisticRegression(x, y, { l2: 0 })).toThrow(/did not converge in 100 iterations: the classes may be separable; use l2 > 0/);
});

test('a constant feature gets weight 0', () => {
  const { x, y } = sample(500, 9);
  const fit = fitLogisticRegression(x.map((row) => [row[0], 4]), y);
  expect(fit.weights[1]).toBe(0);
  expect(fit.weights[0]).toBeGreaterThan(0.5);
});

test('bad input is named', () => {
  expect(() => fitLogisticRegression([[1], [2]], [1, 1])).toThrow('Logistic regression needs both classes but the 2 rows have 2 positives and 0 negatives');
  expect(() => fitLogisticRegression([[1, 2], [2]], [0, 1])).toThrow('Expected 2 features in every row but row 1 has 1');
  expect(() => fitLogisticRegression([[1], [NaN]], [0, 1])).toThrow('Expected finite features but row 1, feature 0 is NaN');
  expect(() => fitLogisticRegression([[1], [2]], [0, 1, 1])).toThrow('features and labels must have the same length');
  expect(() => fitLogisticRegression([[1], [2]], [0, 1], { l2: -1 })).toThrow('Expected a finite l2 >= 0 but received -1');
});
