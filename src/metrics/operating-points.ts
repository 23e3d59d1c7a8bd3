/**
 * Operating points: confusion counts and the rates a clinician reads, at a threshold chosen three
 * ways. Convention (sklearn's): predict melanoma when score >= threshold.
 */
import { rankedForAuc } from './auc';
import { RankedGroups } from './ranking';
import { describeValue, toLabelledScores } from './validate';

export interface OperatingPoint {
  threshold: number;
  tp: number;
  fp: number;
  tn: number;
  fn: number;
  /** TP / (TP + FN); null when there are no positives. */
  sensitivity: number | null;
  /** TN / (TN + FP); null when there are no negatives. */
  specificity: number | null;
  /** TP / (TP + FP) (PPV); null when nothing is predicted positive. */
  precision: number | null;
  /** TN / (TN + FN); null when nothing is predicted negative. */
  npv: number | null;
  /** 2TP / (2TP + FP + FN); null when there are no positives and none predicted. */
  f1: number | null;
  /** sensitivity + specificity - 1 */
  youdenJ: number | null;
}

function ratio(a: number, b: number): number | null {
  return b === 0 ? null : a / b;
}

export function operatingPointFromCounts(threshold: number, tp: number, fp: number, tn: number, fn: number): OperatingPoint {
  const sensitivity = ratio(tp, tp + fn);
  const specificity = ratio(tn, tn + fp);
  return {
    threshold,
    tp,
    fp,
    tn,
    fn,
    sensitivity,
    specificity,
    precision: ratio(tp, tp + fp),
    npv: ratio(tn, tn + fn),
    f1: ratio(2 * tp, 2 * tp + fp + fn),
    youdenJ: sensitivity === null || specificity === null ? null : sensitivity + specificity - 1,
  };
}

/** Counts and rates when predicting positive for score >= threshold. */
export function operatingPointAtThreshold(labels: ArrayLike<number>, scores: ArrayLike<number>, threshold: number): OperatingPoint {
  if (typeof threshold !== 'number' || Number.isNaN(threshold)) {
    throw new RangeError(`Expected a number for threshold but received ${describeValue(threshold)}`);
  }
  const { y, s } = toLabelledScores(labels, scores);
  let tp = 0, fp = 0, tn = 0, fn = 0;
  for (let i = 0; i < y.length; i++) {
    if (s[i] >= threshold) {
      if (y[i] === 1) tp++;
      else fp++;
    } else if (y[i] === 1) fn++;
    else tn++;
  }
  return operatingPointFromCounts(threshold, tp, fp, tn, fn);
}

export function sensitivityPointFromGroups(g: RankedGroups, targetSensitivity = 0.95): OperatingPoint {
  if (typeof targetSensitivity !== 'number' || !(targetSensitivity > 0 && targetSensitivity <= 1)) {
    throw new RangeError(`Expected targetSensitivity in (0, 1] but received ${describeValue(targetSensitivity)}`);
  }
  // Thresholds from the highest score down; the first one reaching the target is the most specific.
  let tp = 0, fp = 0;
  for (let k = g.values.length - 1; k >= 0; k--) {
    tp += g.pos[k];
    fp += g.neg[k];
    // Division is correctly rounded, so tp/nPos equals the target exactly when it should.
    if (tp / g.nPos >= targetSensitivity) return operatingPointFromCounts(g.values[k], tp, fp, g.nNeg - fp, g.nPos - tp);
  }
  throw new Error('unreachable: the lowest threshold has sensitivity 1');
}

export function youdenPointFromGroups(g: RankedGroups): OperatingPoint {
  let best = -Infinity;
  let bestK = 0, bestTp = 0, bestFp = 0;
  let tp = 0, fp = 0;
  for (let k = g.values.length - 1; k >= 0; k--) {
    tp += g.pos[k];
    fp += g.neg[k];
    const j = tp / g.nPos - fp / g.nNeg;
    // Strict '>' keeps the highest threshold among ties (fewest false positives).
    if (j > best) {
      best = j;
      bestK = k; bestTp = tp; bestFp = fp;
    }
  }
  return operatingPointFromCounts(g.values[bestK], bestTp, bestFp, g.nNeg - bestFp, g.nPos - bestTp);
}

/**
 * The highest threshold whose sensitivity reaches `targetSensitivity` (default 0.95): the most
 * specific rule that misses at most 5% of melanomas on these data.
 */
export function operatingPointForSensitivity(labels: ArrayLike<number>, scores: ArrayLike<number>, targetSensitivity = 0.95): OperatingPoint {
  return sensitivityPointFromGroups(rankedForAuc(labels, scores, 'Operating point for a target sensitivity'), targetSensitivity);
}

/** The threshold maximising Youden's J = sensitivity + specificity - 1 (highest such threshold on ties). */
export function youdenOperatingPoint(labels: ArrayLike<number>, scores: ArrayLike<number>): OperatingPoint {
  return youdenPointFromGroups(rankedForAuc(labels, scores, 'Youden operating point'));
}
