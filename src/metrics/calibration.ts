/**
 * Calibration: ECE, Brier score, reliability-diagram data, and temperature scaling.
 * Class-weighted training (pos_weight ~55) inflates melanoma probabilities, so these matter before
 * anyone reads a score as a risk.
 */
import { refuseUnknownOptions } from '../options';
import { describeValue, requirePositiveInteger, requireSameLength, toLabels, toProbabilities, toScores } from './validate';

export interface ReliabilityBin {
  /** Smallest and largest predicted probability in the bin. */
  lower: number;
  upper: number;
  count: number;
  meanPredicted: number;
  /** Observed fraction of positives. */
  observedFrequency: number;
}

export interface CalibrationSummary {
  ece: number;
  /** Largest |observed - predicted| over bins (MCE). */
  maxCalibrationError: number;
  brier: number;
  strategy: 'equal-count' | 'equal-width';
  bins: ReliabilityBin[];
}

function requireSamples(labels: ArrayLike<number>): void {
  if (labels.length === 0) throw new RangeError('Expected at least one sample for calibration but received 0');
}

function checkedPair(labels: ArrayLike<number>, probabilities: ArrayLike<number>): { y: Uint8Array; p: Float64Array } {
  requireSameLength(labels, 'labels', probabilities, 'probabilities');
  requireSamples(labels);
  return { y: toLabels(labels), p: toProbabilities(probabilities) };
}

/** Mean squared difference between probability and outcome. */
export function brierScore(labels: ArrayLike<number>, probabilities: ArrayLike<number>): number {
  const { y, p } = checkedPair(labels, probabilities);
  let s = 0;
  for (let i = 0; i < y.length; i++) s += (p[i] - y[i]) ** 2;
  return s / y.length;
}

const BIN_OPTIONS = ['bins', 'strategy'];

/**
 * Reliability-diagram bins. 'equal-count' splits the sorted probabilities into `bins` runs of
 * (nearly) equal size, moving a boundary forward past tied probabilities so that equal scores
 * always share a bin (the result is then independent of input order); 'equal-width' uses
 * [0, 1/bins), ..., [1 - 1/bins, 1]. Empty bins are omitted.
 */
export function reliabilityBins(
  labels: ArrayLike<number>,
  probabilities: ArrayLike<number>,
  options: { bins?: number; strategy?: 'equal-count' | 'equal-width' } = {},
): ReliabilityBin[] {
  refuseUnknownOptions(options, BIN_OPTIONS, { of: 'reliabilityBins' });
  const nBins = requirePositiveInteger(options.bins ?? 10, 'bins');
  const strategy = options.strategy ?? 'equal-count';
  if (strategy !== 'equal-count' && strategy !== 'equal-width') {
    throw new RangeError(`Expected strategy 'equal-count' or 'equal-width' but received ${describeValue(strategy)}`);
  }
  const { y, p } = checkedPair(labels, probabilities);
  const n = y.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => p[a] - p[b]);
  const bins: ReliabilityBin[] = [];
  const emit = (from: number, to: number): void => {
    if (to <= from) return;
    let sp = 0, sy = 0;
    for (let k = from; k < to; k++) {
      sp += p[order[k]];
      sy += y[order[k]];
    }
    const c = to - from;
    bins.push({ lower: p[order[from]], upper: p[order[to - 1]], count: c, meanPredicted: sp / c, observedFrequency: sy / c });
  };
  if (strategy === 'equal-count') {
    let start = 0;
    for (let b = 1; b <= nBins && start < n; b++) {
      let end = b === nBins ? n : Math.max(start, Math.round((b * n) / nBins));
      while (end < n && end > 0 && p[order[end]] === p[order[end - 1]]) end++;
      emit(start, end);
      start = Math.max(start, end);
    }
  } else {
    let start = 0;
    for (let b = 0; b < nBins; b++) {
      const hi = (b + 1) / nBins;
      let end = start;
      while (end < n && (p[order[end]] < hi || b === nBins - 1)) end++;
      emit(start, end);
      start = end;
    }
  }
  return bins;
}

/**
 * Expected calibration error: sum over bins of (bin size / n) * |observed - mean predicted|,
 * with the Brier score and the bins themselves (the reliability diagram's data).
 */
export function calibrationSummary(
  labels: ArrayLike<number>,
  probabilities: ArrayLike<number>,
  options: { bins?: number; strategy?: 'equal-count' | 'equal-width' } = {},
): CalibrationSummary {
  refuseUnknownOptions(options, BIN_OPTIONS, { of: 'calibrationSummary' });
  const bins = reliabilityBins(labels, probabilities, options);
  let n = 0;
  for (const b of bins) n += b.count;
  let ece = 0;
  let mce = 0;
  for (const b of bins) {
    const gap = Math.abs(b.observedFrequency - b.meanPredicted);
    ece += (b.count / n) * gap;
    mce = Math.max(mce, gap);
  }
  return {
    ece,
    maxCalibrationError: mce,
    brier: brierScore(labels, probabilities),
    strategy: options.strategy ?? 'equal-count',
    bins,
  };
}

/** ECE with equal-count bins (default 10). */
export function expectedCalibrationError(labels: ArrayLike<number>, probabilities: ArrayLike<number>, bins = 10): number {
  return calibrationSummary(labels, probabilities, { bins }).ece;
}

/** log(1 + e^a) without overflow for large |a|. */
/** log(1 + e^a), without overflow. */
export function softplus(a: number): number {
  return a > 0 ? a + Math.log1p(Math.exp(-a)) : Math.log1p(Math.exp(a));
}

export function sigmoid(a: number): number {
  if (a >= 0) return 1 / (1 + Math.exp(-a));
  const e = Math.exp(a);
  return e / (1 + e);
}

/** Logit of a probability, clipped to [eps, 1 - eps] so 0 and 1 stay finite. */
export function logit(p: number, eps = 1e-7): number {
  const q = Math.min(1 - eps, Math.max(eps, p));
  return Math.log(q) - Math.log1p(-q);
}

/** Mean binary cross-entropy of sigmoid(logit / T), computed from logits (never log(0)). */
export function binaryNll(labels: ArrayLike<number>, logits: ArrayLike<number>, temperature = 1): number {
  requireSameLength(labels, 'labels', logits, 'logits');
  requireSamples(labels); // the mean of none would be NaN
  const y = toLabels(labels);
  const z = toScores(logits, 'logits');
  requireTemperature(temperature);
  let s = 0;
  for (let i = 0; i < y.length; i++) {
    const a = z[i] / temperature;
    // -[y log s(a) + (1-y) log(1 - s(a))] = softplus(a) - y a
    s += softplus(a) - y[i] * a;
  }
  return s / y.length;
}

function requireTemperature(t: number): void {
  if (typeof t !== 'number' || !(t > 0) || !Number.isFinite(t)) {
    throw new RangeError(`Expected a positive finite temperature but received ${describeValue(t)}`);
  }
}

export interface TemperatureFit {
  temperature: number;
  nllBefore: number;
  nllAfter: number;
  iterations: number;
}

/**
 * Fit one temperature T on validation logits by minimising the NLL of sigmoid(z / T).
 * In beta = 1/T the NLL is convex (logistic regression on one feature, no intercept), with
 * derivative mean((sigmoid(beta z) - y) z) increasing in beta; so a bracketed, safeguarded
 * Newton iteration on that derivative finds the global minimum.
 */
export function fitTemperature(labels: ArrayLike<number>, logits: ArrayLike<number>, options: { maxIterations?: number } = {}): TemperatureFit {
  requireSameLength(labels, 'labels', logits, 'logits');
  const y = toLabels(labels);
  const z = toScores(logits, 'logits');
  const n = y.length;
  if (n === 0) throw new RangeError('Expected at least one sample to fit a temperature but received 0');
  refuseUnknownOptions(options, ['maxIterations'], { of: 'fitTemperature' });
  const maxIterations = requirePositiveInteger(options.maxIterations ?? 100, 'maxIterations');
  const grad = (beta: number): [number, number] => {
    let g = 0, h = 0;
    for (let i = 0; i < n; i++) {
      const s = sigmoid(beta * z[i]);
      g += (s - y[i]) * z[i];
      h += s * (1 - s) * z[i] * z[i];
    }
    return [g / n, h / n];
  };
  // Without an intercept, the NLL falls without bound as T -> 0 exactly when every non-zero
  // logit has its label's sign (zero logits add a constant log 2 whatever T is).
  let separable = false;
  for (let i = 0; i < n; i++) {
    if (y[i] === 1 ? z[i] < 0 : z[i] > 0) {
      separable = false;
      break;
    }
    if (z[i] !== 0) separable = true;
  }
  if (separable) {
    throw new RangeError('Temperature scaling is undefined: the logits separate the classes perfectly, so the NLL keeps falling as T -> 0');
  }
  let lo = 0;
  const [g0] = grad(0);
  if (!(g0 < 0)) {
    throw new RangeError(
      'Temperature scaling needs logits that rank positives above negatives: expected the NLL to decrease from T = infinity but the logits are uninformative or reversed',
    );
  }
  let hi = 1;
  while (grad(hi)[0] < 0) {
    lo = hi;
    hi *= 2;
    if (hi > 1e12) throw new RangeError(`Temperature scaling did not converge: expected T > 1e-12 but the optimum lies below`);
  }
  let beta = (lo + hi) / 2;
  let iterations = 0;
  for (; iterations < maxIterations; iterations++) {
    const [g, h] = grad(beta);
    if (g < 0) lo = beta;
    else hi = beta;
    let next = h > 0 ? beta - g / h : NaN;
    // Fall back to bisection when Newton leaves the bracket.
    if (!(next > lo && next < hi)) next = (lo + hi) / 2;
    const done = Math.abs(next - beta) <= 1e-14 * beta || hi - lo <= 1e-15 * hi;
    beta = next;
    if (done) break;
  }
  const temperature = 1 / beta;
  return { temperature, nllBefore: binaryNll(y, z, 1), nllAfter: binaryNll(y, z, temperature), iterations: iterations + 1 };
}

/** sigmoid(logit / T) for each logit: calibrated probabilities at inference. */
export function applyTemperature(logits: ArrayLike<number>, temperature: number): Float64Array {
  requireTemperature(temperature);
  const z = toScores(logits, 'logits');
  const out = new Float64Array(z.length);
  for (let i = 0; i < z.length; i++) out[i] = sigmoid(z[i] / temperature);
  return out;
}
