/**
 * L2-regularised logistic regression, fitted by Newton's method (IRLS). The second-stage models
 * that sit on a network's scores (Platt calibration, patient context) have a handful of
 * features, so the exact Hessian is a (d+1)x(d+1) solve per iteration and a fit converges in a
 * few steps, deterministically, with no learning rate to tune.
 */
import { sigmoid, softplus } from './calibration';
import { refuseUnknownOptions } from '../options';
import { describeValue, requirePositiveInteger, requireSameLength, toLabels } from './validate';

export interface LogisticModel {
  /** One weight per feature, on the features' own scale. */
  weights: number[];
  intercept: number;
}

export interface LogisticFit extends LogisticModel {
  /** Mean binary cross-entropy of the fitted model on the training rows (without the penalty). */
  nll: number;
  iterations: number;
}

export interface LogisticOptions {
  /**
   * Ridge penalty (l2 / 2) * |w|^2 on the weights of the standardised features (the intercept is
   * not penalised), added to the summed cross-entropy. Default 1: negligible with hundreds of
   * rows, and it keeps the fit finite when the classes are separable.
   */
  l2?: number;
  maxIterations?: number;
}

/** Solves A x = b for a symmetric positive-definite A (row-major n x n) by Cholesky. */
function solveSpd(a: Float64Array, b: Float64Array, n: number): Float64Array | null {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) return null;
        l[i * n + i] = Math.sqrt(s);
      } else l[i * n + j] = s / l[j * n + j];
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= l[i * n + k] * y[k];
    y[i] = s / l[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < n; k++) s -= l[k * n + i] * x[k];
    x[i] = s / l[i * n + i];
  }
  return x;
}

/**
 * Fits P(y = 1 | x) = sigmoid(w . x + b). Features are standardised internally (so the penalty
 * treats them alike and the Hessian is well conditioned), and the weights come back on the
 * original scale. A constant feature gets weight 0.
 */
export function fitLogisticRegression(features: readonly (readonly number[])[], labels: ArrayLike<number>, options: LogisticOptions = {}): LogisticFit {
  requireSameLength(features, 'features', labels, 'labels');
  refuseUnknownOptions(options, ['l2', 'maxIterations'], { of: 'fitLogisticRegression' });
  const y = toLabels(labels);
  const n = y.length;
  const l2 = options.l2 ?? 1;
  if (typeof l2 !== 'number' || !(l2 >= 0) || !Number.isFinite(l2)) throw new RangeError(`Expected a finite l2 >= 0 but received ${describeValue(l2)}`);
  const maxIterations = requirePositiveInteger(options.maxIterations ?? 100, 'maxIterations');
  let positives = 0;
  for (let i = 0; i < n; i++) positives += y[i];
  if (positives === 0 || positives === n) {
    throw new RangeError(`Logistic regression needs both classes but the ${n} rows have ${positives} positives and ${n - positives} negatives`);
  }
  const d = features[0].length;
  const mean = new Float64Array(d);
  const scale = new Float64Array(d).fill(1);
  const constant = new Array<boolean>(d).fill(true);
  for (let i = 0; i < n; i++) {
    const row = features[i];
    if (row.length !== d) throw new RangeError(`Expected ${d} features in every row but row ${i} has ${row.length}`);
    for (let j = 0; j < d; j++) {
      if (!Number.isFinite(row[j])) throw new RangeError(`Expected finite features but row ${i}, feature ${j} is ${describeValue(row[j])}`);
      mean[j] += row[j] / n;
    }
  }
  for (let j = 0; j < d; j++) {
    let v = 0;
    for (let i = 0; i < n; i++) v += (features[i][j] - mean[j]) ** 2;
    const sd = Math.sqrt(v / n);
    if (sd > 1e-12 * (1 + Math.abs(mean[j]))) {
      scale[j] = sd;
      constant[j] = false;
    }
  }
  // Standardised design with the intercept as column d; constant columns become 0.
  const m = d + 1;
  const x = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) x[i * m + j] = constant[j] ? 0 : (features[i][j] - mean[j]) / scale[j];
    x[i * m + d] = 1;
  }
  const objective = (theta: Float64Array): number => {
    let s = 0;
    for (let i = 0; i < n; i++) {
      let a = 0;
      for (let j = 0; j < m; j++) a += x[i * m + j] * theta[j];
      s += softplus(a) - y[i] * a;
    }
    for (let j = 0; j < d; j++) s += 0.5 * l2 * theta[j] * theta[j];
    return s;
  };
  // Start at the prevalence, where the intercept-only model is optimal.
  let theta = new Float64Array(m);
  theta[d] = Math.log(positives / (n - positives));
  let current = objective(theta);
  let iterations = 0;
  let converged = false;
  for (; iterations < maxIterations && !converged; iterations++) {
    const g = new Float64Array(m);
    const h = new Float64Array(m * m);
    for (let i = 0; i < n; i++) {
      let a = 0;
      for (let j = 0; j < m; j++) a += x[i * m + j] * theta[j];
      const p = sigmoid(a);
      const w = Math.max(p * (1 - p), 1e-12);
      for (let j = 0; j < m; j++) {
        const xij = x[i * m + j];
        g[j] += (p - y[i]) * xij;
        for (let k = 0; k <= j; k++) h[j * m + k] += w * xij * x[i * m + k];
      }
    }
    for (let j = 0; j < m; j++) for (let k = 0; k < j; k++) h[k * m + j] = h[j * m + k];
    for (let j = 0; j < d; j++) {
      g[j] += l2 * theta[j];
      // A zero column (constant feature) keeps a unit diagonal so the system stays solvable.
      h[j * m + j] += l2 > 0 ? l2 : 1e-9;
    }
    const step = solveSpd(h, g, m);
    if (!step) throw new RangeError('Logistic regression failed: the Hessian is singular (are two features identical?)');
    // Damped Newton: halve the step until the objective does not increase.
    let t = 1;
    let next = theta;
    let value = current;
    for (let halving = 0; halving < 40; halving++, t /= 2) {
      const candidate = Float64Array.from(theta, (v, j) => v - t * step[j]);
      const candidateValue = objective(candidate);
      if (candidateValue <= current) {
        next = candidate;
        value = candidateValue;
        break;
      }
    }
    const largestStep = Math.max(...Array.from(step, (v) => Math.abs(t * v)));
    converged = next === theta || largestStep <= 1e-10 * (1 + Math.max(...Array.from(theta, Math.abs))) || current - value <= 1e-13 * current;
    theta = next;
    current = value;
  }
  if (!converged) {
    throw new RangeError(`Logistic regression did not converge in ${maxIterations} iterations${l2 === 0 ? ': the classes may be separable; use l2 > 0' : ''}`);
  }
  const weights = Array.from({ length: d }, (_, j) => theta[j] / scale[j]);
  const intercept = theta[d] - weights.reduce((s, w, j) => s + w * mean[j], 0);
  let nll = 0;
  for (let i = 0; i < n; i++) {
    const a = linearPredictor({ weights, intercept }, features[i]);
    nll += softplus(a) - y[i] * a;
  }
  return { weights, intercept, nll: nll / n, iterations };
}

/** w . x + b: the model's logit for one row. */
export function linearPredictor(model: LogisticModel, row: readonly number[]): number {
  let a = model.intercept;
  for (let j = 0; j < model.weights.length; j++) a += model.weights[j] * row[j];
  return a;
}
