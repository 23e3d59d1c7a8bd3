/** Small numerical helpers: standard normal CDF and quantile, sample moments, percentiles. */
import { requireProbabilityLevel } from './validate';

const LOG_SQRT_2PI = 0.91893853320467274178;

/** P(Z > x) for x >= 0, to ~1e-15 absolute (and good relative accuracy in the far tail). */
function upperTail(x: number): number {
  if (x < 5) {
    // Marsaglia (2004): Phi(x) = 1/2 + phi(x) * (x + x^3/3 + x^5/(3*5) + ...).
    let term = x;
    let sum = x;
    for (let i = 1; i < 500; i++) {
      term *= (x * x) / (2 * i + 1);
      const next = sum + term;
      if (next === sum) break;
      sum = next;
    }
    return 0.5 - sum * Math.exp(-0.5 * x * x - LOG_SQRT_2PI);
  }
  // Continued fraction phi(x) / (x + 1/(x + 2/(x + 3/(x + ...)))), accurate in the tail.
  let t = x;
  for (let k = 80; k >= 1; k--) t = x + k / t;
  return Math.exp(-0.5 * x * x - LOG_SQRT_2PI) / t;
}

/** P(Z <= z) for a standard normal Z. */
export function normalCdf(z: number): number {
  if (Number.isNaN(z)) return NaN;
  return z >= 0 ? 1 - upperTail(z) : upperTail(-z);
}

/** Two-sided p-value of a z statistic. */
export function twoSidedP(z: number): number {
  if (Number.isNaN(z)) return NaN;
  if (!Number.isFinite(z)) return 0;
  return Math.min(1, 2 * upperTail(Math.abs(z)));
}

/** Inverse standard normal CDF (Acklam's rational approximation, relative error ~1e-9). */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`Expected p in (0, 1) but received ${p}`);
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** z for a two-sided interval at `level` (1.959963984540054 for 0.95). */
export function zForLevel(level: number): number {
  requireProbabilityLevel(level); // 95 (percent) would be read as p = 48
  // The common case exactly, so reported CIs do not carry the approximation's last digits.
  if (level === 0.95) return 1.959963984540054;
  return normalQuantile(0.5 + level / 2);
}

export function mean(xs: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s / xs.length;
}

/** Sample standard deviation (n - 1); null below two values. */
export function sampleSd(xs: ArrayLike<number>): number | null {
  if (xs.length < 2) return null;
  const m = mean(xs);
  let ss = 0;
  for (let i = 0; i < xs.length; i++) ss += (xs[i] - m) * (xs[i] - m);
  return Math.sqrt(ss / (xs.length - 1));
}

/** Percentile with linear interpolation between order statistics (numpy's default, "type 7"). */
export function percentileSorted(sorted: ArrayLike<number>, q: number): number {
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}
