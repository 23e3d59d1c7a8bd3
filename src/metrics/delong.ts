/**
 * DeLong (1988) variance of the AUC and test for two correlated AUCs, via the fast midrank
 * algorithm of Sun & Xu (IEEE SPL 21(11), 2014).
 *
 * Sun & Xu: V10_i = (Tz_i - Tx_i) / n_neg, where Tz is a positive's midrank among all samples and
 * Tx its midrank among positives; the difference is "negatives below + 1/2 tied negatives". The
 * tie groups of ranking.ts give exactly that difference for every sample of a group at once, so
 * the whole computation is one sort plus linear walks: O(n log n) rather than O(n_pos * n_neg).
 */
import { aucFromGroups, groupIndexOf, rankGroups, RankedGroups } from './ranking';
import { requireBothClasses, requireProbabilityLevel, requireSameLength, toLabelledScores, toLabels, toScores, UndefinedMetricError } from './validate';
import { twoSidedP, zForLevel } from './stats';

export interface DelongResult {
  auc: number;
  /** DeLong variance of the AUC: var(V10)/n_pos + var(V01)/n_neg. */
  variance: number;
  se: number;
  level: number;
  /** AUC +- z * se, clipped to [0, 1]. */
  ci: [number, number];
  nPos: number;
  nNeg: number;
}

export interface DelongTestResult {
  aucA: number;
  aucB: number;
  /** aucA - aucB */
  difference: number;
  /** Standard error of the difference (accounts for the correlation of A and B on the same samples). */
  se: number;
  /** Correlation of the two AUC estimates. */
  correlation: number | null;
  z: number;
  /** Two-sided p-value for H0: AUC_A = AUC_B. */
  pValue: number;
  level: number;
  /** CI of the difference. */
  ci: [number, number];
  nPos: number;
  nNeg: number;
}

function requireVarianceSamples(nPos: number, nNeg: number): void {
  requireBothClasses(nPos, nNeg, 'DeLong variance');
  if (nPos < 2 || nNeg < 2) {
    throw new UndefinedMetricError(
      `DeLong variance is undefined with fewer than 2 samples of a class: expected at least 2 positives and 2 negatives but received ${nPos} positive${nPos === 1 ? '' : 's'} and ${nNeg} negative${nNeg === 1 ? '' : 's'}`,
    );
  }
}

/**
 * Per-group structural components: v10[k] is V10 of every positive scored values[k],
 * v01[k] is V01 of every negative scored values[k].
 */
export function delongComponentsFromGroups(g: RankedGroups): { v10: Float64Array; v01: Float64Array } {
  const G = g.values.length;
  const v10 = new Float64Array(G);
  const v01 = new Float64Array(G);
  let negBelow = 0;
  let posBelow = 0;
  for (let k = 0; k < G; k++) {
    v10[k] = (negBelow + g.neg[k] / 2) / g.nNeg;
    const posAbove = g.nPos - posBelow - g.pos[k];
    v01[k] = (posAbove + g.pos[k] / 2) / g.nPos;
    negBelow += g.neg[k];
    posBelow += g.pos[k];
  }
  return { v10, v01 };
}

/** DeLong variance from tie groups (each group's components weighted by its counts). */
export function delongFromGroups(g: RankedGroups, level = 0.95): DelongResult {
  requireVarianceSamples(g.nPos, g.nNeg);
  requireProbabilityLevel(level);
  const auc = aucFromGroups(g);
  const { v10, v01 } = delongComponentsFromGroups(g);
  // Two-pass (deviations from the known mean) to avoid cancellation for AUCs near 0 or 1.
  let s10 = 0;
  let s01 = 0;
  for (let k = 0; k < g.values.length; k++) {
    s10 += g.pos[k] * (v10[k] - auc) ** 2;
    s01 += g.neg[k] * (v01[k] - auc) ** 2;
  }
  const variance = s10 / (g.nPos - 1) / g.nPos + s01 / (g.nNeg - 1) / g.nNeg;
  const se = Math.sqrt(variance);
  const z = zForLevel(level);
  return {
    auc,
    variance,
    se,
    level,
    ci: [Math.max(0, auc - z * se), Math.min(1, auc + z * se)],
    nPos: g.nPos,
    nNeg: g.nNeg,
  };
}

/** DeLong standard error and CI (default 95%) of the AUC. */
export function delongCi(labels: ArrayLike<number>, scores: ArrayLike<number>, level = 0.95): DelongResult {
  const { y, s } = toLabelledScores(labels, scores);
  return delongFromGroups(rankGroups(y, s), level);
}

/**
 * Per-sample structural components: for each positive i (in input order) V10_i, for each
 * negative j V01_j. Exposed for the paired test and for checking against a direct computation.
 */
export function delongComponents(labels: ArrayLike<number>, scores: ArrayLike<number>): { auc: number; v10: Float64Array; v01: Float64Array } {
  const { y, s } = toLabelledScores(labels, scores);
  const g = rankGroups(y, s);
  requireBothClasses(g.nPos, g.nNeg, 'DeLong components');
  const c = delongComponentsFromGroups(g);
  const v10 = new Float64Array(g.nPos);
  const v01 = new Float64Array(g.nNeg);
  for (let i = 0, a = 0, b = 0; i < y.length; i++) {
    const k = groupIndexOf(g.values, s[i]);
    if (y[i] === 1) v10[a++] = c.v10[k];
    else v01[b++] = c.v01[k];
  }
  return { auc: aucFromGroups(g), v10, v01 };
}

function covariance(a: Float64Array, ma: number, b: Float64Array, mb: number): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - ma) * (b[i] - mb);
  return s / (a.length - 1);
}

/**
 * DeLong test for two correlated AUCs: models A and B scored the same samples.
 * Var(A - B) = [S10_AA + S10_BB - 2 S10_AB] / n_pos + [S01_AA + S01_BB - 2 S01_AB] / n_neg.
 */
export function delongTest(
  labels: ArrayLike<number>,
  scoresA: ArrayLike<number>,
  scoresB: ArrayLike<number>,
  level = 0.95,
): DelongTestResult {
  requireSameLength(labels, 'labels', scoresA, 'scoresA');
  requireSameLength(labels, 'labels', scoresB, 'scoresB');
  requireProbabilityLevel(level);
  const y = toLabels(labels);
  const sA = toScores(scoresA, 'scoresA');
  const sB = toScores(scoresB, 'scoresB');
  let nPos = 0;
  for (let i = 0; i < y.length; i++) nPos += y[i];
  requireVarianceSamples(nPos, y.length - nPos);
  const A = delongComponents(y, sA);
  const B = delongComponents(y, sB);
  const nNeg = y.length - nPos;
  const vA = covariance(A.v10, A.auc, A.v10, A.auc) / nPos + covariance(A.v01, A.auc, A.v01, A.auc) / nNeg;
  const vB = covariance(B.v10, B.auc, B.v10, B.auc) / nPos + covariance(B.v01, B.auc, B.v01, B.auc) / nNeg;
  const cAB = covariance(A.v10, A.auc, B.v10, B.auc) / nPos + covariance(A.v01, A.auc, B.v01, B.auc) / nNeg;
  const variance = Math.max(0, vA + vB - 2 * cAB);
  const se = Math.sqrt(variance);
  const difference = A.auc - B.auc;
  // Identical rankings give se = 0 and difference = 0: no evidence of a difference, p = 1.
  const z = se > 0 ? difference / se : difference === 0 ? 0 : Math.sign(difference) * Infinity;
  const zc = zForLevel(level);
  return {
    aucA: A.auc,
    aucB: B.auc,
    difference,
    se,
    correlation: vA > 0 && vB > 0 ? cAB / Math.sqrt(vA * vB) : null,
    z,
    pValue: z === 0 ? 1 : twoSidedP(z),
    level,
    ci: [difference - zc * se, difference + zc * se],
    nPos,
    nNeg,
  };
}
