/**
 * Partial AUC above a TPR floor: the ISIC 2024 challenge's primary metric (shared/reference/metrics.md).
 * Labels are flipped and scores negated, then the ROC area is taken up to FPR = 1 - minTpr with
 * linear interpolation at the cut. The result ranges over [0, 1 - minTpr] (default [0, 0.2]).
 * (The challenge's McClish-rescaling formula reduces algebraically to this raw area.)
 */
import { rankedForAuc } from './auc';
import { RankedGroups } from './ranking';

function requireMinTpr(minTpr: number): void {
  if (typeof minTpr !== 'number' || !(minTpr >= 0 && minTpr < 1)) {
    throw new RangeError(`Expected minTpr in [0, 1) but received ${String(minTpr)}`);
  }
}

/** pAUC from tie groups (counts or bootstrap weights). */
export function partialAucFromGroups(g: RankedGroups, minTpr = 0.8): number {
  requireMinTpr(minTpr);
  const maxFpr = 1 - minTpr;
  // In the flipped problem the "positives" are the original negatives, and descending negated
  // scores means ascending original scores: walk the groups upward.
  let x0 = 0;
  let y0 = 0;
  let fp = 0;
  let tp = 0;
  let area = 0;
  for (let k = 0; k < g.values.length; k++) {
    fp += g.pos[k];
    tp += g.neg[k];
    const x1 = fp / g.nPos;
    const y1 = tp / g.nNeg;
    if (x1 >= maxFpr) {
      const yCut = y0 + ((y1 - y0) * (maxFpr - x0)) / (x1 - x0);
      return area + ((maxFpr - x0) * (y0 + yCut)) / 2;
    }
    area += ((x1 - x0) * (y0 + y1)) / 2;
    x0 = x1;
    y0 = y1;
  }
  return area; // unreachable for maxFpr <= 1: the last point has x = 1
}

/**
 * ISIC 2024 partial AUC above `minTpr` (default 0.8), in [0, 1 - minTpr].
 * @throws UndefinedMetricError when one class is absent.
 */
export function partialAuc(labels: ArrayLike<number>, scores: ArrayLike<number>, minTpr = 0.8): number {
  requireMinTpr(minTpr);
  return partialAucFromGroups(rankedForAuc(labels, scores, 'Partial AUC'), minTpr);
}
