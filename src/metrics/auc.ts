/**
 * AUC-ROC exactly as sklearn.metrics.roc_auc_score / roc_curve compute it (ties count 1/2).
 * Definitions: shared/reference/metrics.md.
 */
import { aucFromGroups, rankGroups, RankedGroups } from './ranking';
import { requireBothClasses, toLabelledScores, UndefinedMetricError } from './validate';

export interface RocCurve {
  /** False-positive rate at each threshold, non-decreasing from 0 to 1. */
  fpr: Float64Array;
  /** True-positive rate at each threshold, non-decreasing from 0 to 1. */
  tpr: Float64Array;
  /** Decision thresholds (predict positive when score >= threshold), decreasing; the first is +Infinity. */
  thresholds: Float64Array;
}

export type AucResult = { auc: number; reason: null } | { auc: null; reason: string };

/** Validated labels/scores ranked into tie groups; throws when one class is absent. */
export function rankedForAuc(labels: ArrayLike<number>, scores: ArrayLike<number>, metric = 'ROC AUC'): RankedGroups {
  const { y, s } = toLabelledScores(labels, scores);
  const g = rankGroups(y, s);
  requireBothClasses(g.nPos, g.nNeg, metric);
  return g;
}

/**
 * Area under the ROC curve = Mann-Whitney U / (n_pos * n_neg), midranks for ties.
 * @throws UndefinedMetricError (a RangeError) when one class is absent; RangeError for bad input.
 */
export function rocAuc(labels: ArrayLike<number>, scores: ArrayLike<number>): number {
  return aucFromGroups(rankedForAuc(labels, scores));
}

/** Like rocAuc, but an undefined AUC (one class absent) comes back as {auc: null, reason}. */
export function rocAucOrNull(labels: ArrayLike<number>, scores: ArrayLike<number>): AucResult {
  try {
    return { auc: rocAuc(labels, scores), reason: null };
  } catch (e) {
    if (e instanceof UndefinedMetricError) return { auc: null, reason: e.message };
    throw e;
  }
}

/** ROC points from tie groups: one point per distinct score, plus the (0, 0) origin. */
export function rocFromGroups(g: RankedGroups, dropIntermediate = false): RocCurve {
  const G = g.values.length;
  let keep: number[] | null = null;
  if (dropIntermediate && G > 2) {
    // sklearn's drop_intermediate: keep only corners, i.e. points where the cumulative counts
    // change direction; collinear points add nothing to the area or the plot.
    keep = [0];
    // Cumulative counts at points k-1, k, k+1 (points ordered by decreasing threshold).
    let tp0 = g.pos[G - 1], fp0 = g.neg[G - 1];
    let tp1 = tp0 + g.pos[G - 2], fp1 = fp0 + g.neg[G - 2];
    for (let k = 1; k < G - 1; k++) {
      const tp2 = tp1 + g.pos[G - 2 - k];
      const fp2 = fp1 + g.neg[G - 2 - k];
      if (tp2 - 2 * tp1 + tp0 !== 0 || fp2 - 2 * fp1 + fp0 !== 0) keep.push(k);
      tp0 = tp1; fp0 = fp1; tp1 = tp2; fp1 = fp2;
    }
    keep.push(G - 1);
  }
  const m = keep ? keep.length : G;
  const fpr = new Float64Array(m + 1);
  const tpr = new Float64Array(m + 1);
  const thresholds = new Float64Array(m + 1);
  thresholds[0] = Infinity;
  let tp = 0, fp = 0, out = 1, next = 0;
  for (let k = 0; k < G; k++) {
    const idx = G - 1 - k;
    tp += g.pos[idx];
    fp += g.neg[idx];
    if (keep && keep[next] !== k) continue;
    next++;
    fpr[out] = fp / g.nNeg;
    tpr[out] = tp / g.nPos;
    thresholds[out] = g.values[idx];
    out++;
  }
  return { fpr, tpr, thresholds };
}

/**
 * ROC curve like sklearn.metrics.roc_curve: thresholds decreasing from +Infinity, one point per
 * distinct score (tied scores make one diagonal segment). `dropIntermediate` (sklearn's default)
 * removes collinear points.
 */
export function rocCurve(
  labels: ArrayLike<number>,
  scores: ArrayLike<number>,
  options: { dropIntermediate?: boolean } = {},
): RocCurve {
  return rocFromGroups(rankedForAuc(labels, scores, 'ROC curve'), options.dropIntermediate ?? false);
}

/** Trapezoid area under (x, y) points: what sklearn.metrics.auc does. */
export function trapezoidArea(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let a = 0;
  for (let i = 1; i < x.length; i++) a += ((x[i] - x[i - 1]) * (y[i] + y[i - 1])) / 2;
  return a;
}
