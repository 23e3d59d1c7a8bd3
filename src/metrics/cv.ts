/**
 * Cross-validation summary: per-fold AUC, mean +- sd over folds, and the pooled out-of-fold AUC
 * with its DeLong CI; optionally per patient (max or mean score of a patient's images).
 */
import { aucFromGroups, rankGroups } from './ranking';
import { delongFromGroups, DelongResult } from './delong';
import { mean, sampleSd } from './stats';
import { refuseUnknownOptions } from '../options';
import { describeValue, requireProbabilityLevel, toLabels, toScores, UndefinedMetricError } from './validate';

export type PatientAggregation = 'none' | 'max' | 'mean';

export interface ScoredRow {
  target: number;
  score: number;
  patientId?: string | null;
  fold?: string | number | null;
  imageName?: string;
}

export interface AggregatedRow {
  /** Patient id (or image name / row index when aggregation is 'none'). */
  id: string;
  target: 0 | 1;
  score: number;
  fold: string | null;
  /** Images merged into this row. */
  images: number;
}

function requireAggregation(mode: unknown): PatientAggregation {
  if (mode !== 'none' && mode !== 'max' && mode !== 'mean') {
    throw new RangeError(`Expected patient aggregation 'none', 'max' or 'mean' but received ${describeValue(mode)}`);
  }
  return mode;
}

/**
 * One row per patient (within a fold): the patient is positive if any image is, and scores
 * combine by max (a patient is as suspicious as their worst lesion) or mean.
 */
export function aggregateByPatient(rows: readonly ScoredRow[], mode: PatientAggregation): AggregatedRow[] {
  requireAggregation(mode);
  const y = toLabels(rows.map((r) => r.target), 'targets');
  const s = toScores(rows.map((r) => r.score), 'scores');
  if (mode === 'none') {
    return rows.map((r, i) => ({
      id: r.imageName ?? String(i),
      target: y[i] as 0 | 1,
      score: s[i],
      fold: r.fold === undefined || r.fold === null ? null : String(r.fold),
      images: 1,
    }));
  }
  const byKey = new Map<string, AggregatedRow>();
  rows.forEach((r, i) => {
    if (r.patientId === undefined || r.patientId === null || r.patientId === '') {
      throw new RangeError(`Patient aggregation '${mode}' needs a patient id on every row but row ${i}${r.imageName ? ` (${r.imageName})` : ''} has none`);
    }
    const fold = r.fold === undefined || r.fold === null ? null : String(r.fold);
    // Key by fold too: a patient split across folds is a leak, and merging would hide it.
    const key = `${fold ?? ''}\u0000${r.patientId}`;
    const a = byKey.get(key);
    if (!a) byKey.set(key, { id: r.patientId, target: y[i] as 0 | 1, score: s[i], fold, images: 1 });
    else {
      a.target = (a.target | y[i]) as 0 | 1;
      a.score = mode === 'max' ? Math.max(a.score, s[i]) : a.score + s[i];
      a.images++;
    }
  });
  const out = [...byKey.values()];
  if (mode === 'mean') for (const a of out) a.score /= a.images;
  return out;
}

export interface FoldSummary {
  fold: string;
  n: number;
  positives: number;
  negatives: number;
  auc: number | null;
  /** Why the AUC is null (e.g. the fold has no positives). */
  reason: string | null;
}

export interface CvSummary {
  aggregation: PatientAggregation;
  folds: FoldSummary[];
  /** Mean and sample sd of the defined per-fold AUCs (sd null with fewer than two). */
  meanAuc: number | null;
  sdAuc: number | null;
  /** Out-of-fold predictions pooled into one AUC, with its DeLong CI (null if undefined). */
  pooled: { auc: number; delong: DelongResult | null; delongReason: string | null };
  /** Patients that appear in more than one fold (a leak in patient-grouped CV). */
  patientsInSeveralFolds: string[];
}

/** Natural order for fold labels: numeric when they all are. */
export function compareFolds(a: string, b: string): number {
  const na = Number(a), nb = Number(b);
  if (a.trim() !== '' && b.trim() !== '' && Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function crossValidationSummary(
  rows: readonly ScoredRow[],
  options: { aggregation?: PatientAggregation; level?: number } = {},
): CvSummary {
  refuseUnknownOptions(options, ['aggregation', 'level'], { of: 'crossValidationSummary' });
  const aggregation = requireAggregation(options.aggregation ?? 'none');
  const level = options.level ?? 0.95;
  requireProbabilityLevel(level);
  rows.forEach((r, i) => {
    if (r.fold === undefined || r.fold === null || r.fold === '') {
      throw new RangeError(`Cross-validation summary needs a fold on every row but row ${i}${r.imageName ? ` (${r.imageName})` : ''} has none`);
    }
  });
  const agg = aggregateByPatient(rows, aggregation);
  const foldsOfPatient = new Map<string, Set<string>>();
  for (const r of rows) {
    if (!r.patientId) continue;
    const set = foldsOfPatient.get(r.patientId) ?? new Set<string>();
    set.add(String(r.fold));
    foldsOfPatient.set(r.patientId, set);
  }
  const byFold = new Map<string, AggregatedRow[]>();
  for (const a of agg) {
    const list = byFold.get(a.fold!) ?? [];
    list.push(a);
    byFold.set(a.fold!, list);
  }
  const folds: FoldSummary[] = [...byFold.keys()].sort(compareFolds).map((fold) => {
    const list = byFold.get(fold)!;
    const g = rankGroups(toLabels(list.map((a) => a.target)), toScores(list.map((a) => a.score)));
    const undefinedReason =
      g.nPos === 0 || g.nNeg === 0
        ? `AUC is undefined in fold ${fold}: expected both classes but received ${g.nPos} positives and ${g.nNeg} negatives`
        : null;
    return {
      fold,
      n: list.length,
      positives: g.nPos,
      negatives: g.nNeg,
      auc: undefinedReason ? null : aucFromGroups(g),
      reason: undefinedReason,
    };
  });
  const defined = folds.filter((f) => f.auc !== null).map((f) => f.auc as number);
  const pooledGroups = rankGroups(toLabels(agg.map((a) => a.target)), toScores(agg.map((a) => a.score)));
  if (pooledGroups.nPos === 0 || pooledGroups.nNeg === 0) {
    throw new UndefinedMetricError(
      `Pooled out-of-fold AUC is undefined when one class is absent: expected at least one positive (label 1) and one negative (label 0) but received ${pooledGroups.nPos} positives and ${pooledGroups.nNeg} negatives`,
    );
  }
  let delong: DelongResult | null = null;
  let delongReason: string | null = null;
  try {
    delong = delongFromGroups(pooledGroups, level);
  } catch (e) {
    if (!(e instanceof UndefinedMetricError)) throw e;
    delongReason = e.message;
  }
  return {
    aggregation,
    folds,
    meanAuc: defined.length ? mean(defined) : null,
    sdAuc: sampleSd(defined),
    pooled: { auc: aucFromGroups(pooledGroups), delong, delongReason },
    patientsInSeveralFolds: [...foldsOfPatient].filter(([, f]) => f.size > 1).map(([p]) => p).sort(),
  };
}
