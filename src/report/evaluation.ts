/**
 * A whole evaluation of one model's predictions as a plain JSON-safe object: the machine-readable
 * record of a run, and the input of the HTML report.
 */
import {
  aggregateByPatient, AggregatedRow, bootstrapAuc, BootstrapResult, calibrationSummary, CalibrationSummary, compareFolds,
  crossValidationSummary, delongFromGroups, DelongResult, fitTemperature, applyTemperature, logit, OperatingPoint,
  operatingPointAtThreshold, PatientAggregation, rocFromGroups, sensitivityPointFromGroups, sigmoid, UndefinedMetricError,
  youdenPointFromGroups, partialAucFromGroups, expectedCalibrationError, brierScore,
} from '../metrics';
import { aucFromGroups, rankGroups, RankedGroups } from '../metrics/ranking';
import { describeValue } from '../metrics/validate';
import { PredictionRow } from './predictions-csv';
import { refuseUnknownOptions } from '../options';

export const EVALUATION_SCHEMA = 'melanoma-evaluation/1';

export type ScoreScale = 'probability' | 'logit';

export interface EvaluationOptions {
  /** Threshold for the "at threshold" operating point (default 0.5 for probabilities, 0 for logits). */
  threshold?: number;
  /** Sensitivity the clinical operating point must reach (default 0.95). */
  targetSensitivity?: number;
  /** The operating-point table's sensitivities: the most specific threshold reaching each (default 0.8, 0.9, 0.95). */
  sensitivities?: number[];
  /** The operating-point table's fixed thresholds, on the score's own scale (default none). */
  thresholds?: number[];
  /** Evaluate per image ('none', default) or per patient (max or mean of a patient's scores). */
  patientAggregation?: PatientAggregation;
  /** Bootstrap replicates for CIs (default 1000; 0 disables). */
  bootstrap?: number;
  seed?: number;
  /** Confidence level of all intervals (default 0.95). */
  level?: number;
  /** TPR floor of the partial AUC (default 0.8, as in ISIC 2024). */
  minTpr?: number;
  /** Bins of the reliability diagram (equal-count, default 10). */
  calibrationBins?: number;
  /** How to read scores: 'auto' (default) takes scores in [0, 1] as probabilities, others as logits. */
  scoreScale?: 'auto' | ScoreScale;
  /** Shown in the report, e.g. the predictions file name. */
  source?: string;
}

/** ROC curve in JSON form; thresholds[0] is null and stands for +Infinity (nothing positive). */
export interface RocJson {
  fpr: number[];
  tpr: number[];
  thresholds: (number | null)[];
}

/**
 * Scores per class on the log-odds axis: melanoma probabilities crowd near 0, and on a linear
 * axis nearly every benign lesion falls into the first bin.
 */
export interface Histogram {
  /** Bin edges (bins + 1) in log-odds: logit(probability), clipped at 1e-6, or the logit score itself. */
  edges: number[];
  benign: number[];
  melanoma: number[];
}

export interface Evaluation {
  schema: typeof EVALUATION_SCHEMA;
  createdAt: string;
  source: string | null;
  options: Required<Omit<EvaluationOptions, 'source' | 'threshold' | 'scoreScale'>> & { threshold: number; scoreScale: ScoreScale };
  /** What one evaluated unit is: an image, or a patient (aggregated scores). */
  unit: 'image' | 'patient';
  counts: { rows: number; units: number; positives: number; negatives: number; prevalence: number; patients: number | null; folds: number | null };
  auc: {
    value: number;
    delong: Pick<DelongResult, 'se' | 'ci' | 'level'> | null;
    delongReason: string | null;
    bootstrap: (Pick<BootstrapResult, 'unit' | 'units' | 'replicates' | 'validReplicates' | 'seed' | 'level'> & { ci: [number, number]; se: number | null }) | null;
  };
  partialAuc: { minTpr: number; max: number; value: number; bootstrapCi: [number, number] | null };
  roc: RocJson;
  operatingPoints: {
    atThreshold: OperatingPoint;
    atTargetSensitivity: OperatingPoint & { targetSensitivity: number };
    youden: OperatingPoint;
    /** One row per `sensitivities` entry, ascending. */
    atSensitivities: (OperatingPoint & { targetSensitivity: number })[];
    /** One row per `thresholds` entry, ascending. */
    atThresholds: OperatingPoint[];
  };
  calibration: (CalibrationSummary & {
    /** Temperature fitted on these same predictions (in-sample; fit on validation data in practice). */
    temperatureScaling: { temperature: number; nllBefore: number; nllAfter: number; eceAfter: number; brierAfter: number; bins: CalibrationSummary['bins'] } | null;
    temperatureReason: string | null;
  }) | null;
  calibrationReason: string | null;
  histogram: Histogram;
  /**
   * The cases to look at first, at the target-sensitivity threshold: the melanomas it misses
   * (scored below it, lowest first) and its false alarms (benign lesions scored at or above it,
   * highest first), at most HARDEST_CASES of each.
   */
  hardestCases: { threshold: number; missedMelanomas: HardCase[]; falseAlarms: HardCase[] };
  crossValidation: {
    folds: { fold: string; n: number; positives: number; negatives: number; auc: number | null; reason: string | null; roc: RocJson | null }[];
    meanAuc: number | null;
    sdAuc: number | null;
    pooledAuc: number;
    pooledDelong: Pick<DelongResult, 'se' | 'ci' | 'level'> | null;
    patientsInSeveralFolds: string[];
  } | null;
  warnings: string[];
}

/** An image (or a patient, with patient aggregation) in the hardest-cases lists. */
export interface HardCase {
  /** Image name, or patient id when scores were aggregated per patient. */
  id: string;
  score: number;
  fold: string | null;
}

export const HARDEST_CASES = 10;

function hardestCases(units: readonly AggregatedRow[], threshold: number): Evaluation['hardestCases'] {
  const hardCase = (u: AggregatedRow): HardCase => ({ id: u.id, score: u.score, fold: u.fold });
  const missed = units.filter((u) => u.target === 1 && u.score < threshold).sort((a, b) => a.score - b.score);
  const alarms = units.filter((u) => u.target === 0 && u.score >= threshold).sort((a, b) => b.score - a.score);
  return { threshold, missedMelanomas: missed.slice(0, HARDEST_CASES).map(hardCase), falseAlarms: alarms.slice(0, HARDEST_CASES).map(hardCase) };
}

function rocJson(g: RankedGroups): RocJson {
  const c = rocFromGroups(g, true);
  return { fpr: Array.from(c.fpr), tpr: Array.from(c.tpr), thresholds: Array.from(c.thresholds, (t) => (Number.isFinite(t) ? t : null)) };
}

function checkNumber(value: unknown, name: string, ok: (v: number) => boolean, expectation: string): number {
  if (typeof value !== 'number' || !ok(value)) throw new RangeError(`Expected ${expectation} for ${name} but received ${describeValue(value)}`);
  return value;
}

/** A list of numbers, each checked, sorted ascending without repeats. */
function checkNumberList(value: unknown, name: string, ok: (v: number) => boolean, expectation: string): number[] {
  if (!Array.isArray(value)) throw new RangeError(`Expected an array, each entry ${expectation}, for ${name} but received ${describeValue(value)}`);
  const checked = value.map((v, i) => checkNumber(v, `${name}[${i}]`, ok, expectation));
  return [...new Set(checked)].sort((a, b) => a - b);
}

const KNOWN_OPTIONS = new Set([
  'threshold', 'targetSensitivity', 'sensitivities', 'thresholds', 'patientAggregation', 'bootstrap', 'seed', 'level', 'minTpr', 'calibrationBins', 'scoreScale', 'source',
]);

export interface OperatingPointRow {
  name: string;
  point: OperatingPoint;
  note: string;
}

function percent(v: number): string {
  return `${Number((100 * v).toFixed(1))}%`;
}

/**
 * The operating-point table as the reports show it: the target sensitivity, the other
 * sensitivities, Youden's optimum, the fixed threshold and the other thresholds; a sensitivity or
 * threshold already in the table is not repeated.
 */
export function operatingPointRows(e: Pick<Evaluation, 'operatingPoints' | 'options'>): OperatingPointRow[] {
  const o = e.operatingPoints;
  const scale = e.options.scoreScale === 'probability' ? 'score' : 'score (logit)';
  return [
    { name: `Sensitivity ≥ ${percent(o.atTargetSensitivity.targetSensitivity)}`, point: o.atTargetSensitivity, note: 'highest threshold reaching the target: few missed melanomas' },
    ...(o.atSensitivities ?? [])
      .filter((p) => p.targetSensitivity !== o.atTargetSensitivity.targetSensitivity)
      .map((p) => ({ name: `Sensitivity ≥ ${percent(p.targetSensitivity)}`, point: p, note: 'highest threshold reaching this sensitivity' })),
    { name: 'Youden optimum', point: o.youden, note: 'maximises sensitivity + specificity − 1' },
    { name: `Fixed threshold ${o.atThreshold.threshold}`, point: o.atThreshold, note: `${scale} ≥ threshold counts as melanoma` },
    ...(o.atThresholds ?? [])
      .filter((p) => p.threshold !== o.atThreshold.threshold)
      .map((p) => ({ name: `Fixed threshold ${p.threshold}`, point: p, note: `${scale} ≥ threshold counts as melanoma` })),
  ];
}

/** Where a score lies on the histogram's log-odds axis. */
export function histogramPosition(score: number, scale: ScoreScale): number {
  return scale === 'probability' ? logit(score, 1e-6) : score;
}

function histogram(units: AggregatedRow[], scale: ScoreScale, bins: number): Histogram {
  const xs = units.map((u) => histogramPosition(u.score, scale));
  let lo = Infinity, hi = -Infinity;
  for (const x of xs) {
    lo = Math.min(lo, x);
    hi = Math.max(hi, x);
  }
  if (!(hi > lo)) {
    lo -= 0.5;
    hi += 0.5;
  }
  const width = (hi - lo) / bins;
  const edges = Array.from({ length: bins + 1 }, (_, i) => (i === bins ? hi : lo + i * width));
  const benign = new Array<number>(bins).fill(0);
  const melanoma = new Array<number>(bins).fill(0);
  units.forEach((u, i) => {
    const b = Math.min(bins - 1, Math.max(0, Math.floor((xs[i] - lo) / width)));
    (u.target === 1 ? melanoma : benign)[b]++;
  });
  return { edges, benign, melanoma };
}

/** Compute the full evaluation of predictions rows. */
export function evaluatePredictions(rows: readonly PredictionRow[], options: EvaluationOptions = {}): Evaluation {
  refuseUnknownOptions(options, [...KNOWN_OPTIONS], { kind: 'evaluation option' });
  const targetSensitivity = checkNumber(options.targetSensitivity ?? 0.95, 'targetSensitivity', (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  const replicates = checkNumber(options.bootstrap ?? 1000, 'bootstrap', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  const seed = checkNumber(options.seed ?? 0, 'seed', (v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff, 'an integer in [0, 4294967295]');
  const level = checkNumber(options.level ?? 0.95, 'level', (v) => v > 0 && v < 1, 'a number in (0, 1)');
  const minTpr = checkNumber(options.minTpr ?? 0.8, 'minTpr', (v) => v >= 0 && v < 1, 'a number in [0, 1)');
  const calibrationBins = checkNumber(options.calibrationBins ?? 10, 'calibrationBins', (v) => Number.isInteger(v) && v >= 1, 'a positive integer');
  const aggregation = options.patientAggregation ?? 'none';
  const scaleOption = options.scoreScale ?? 'auto';
  if (scaleOption !== 'auto' && scaleOption !== 'probability' && scaleOption !== 'logit') {
    throw new RangeError(`Expected scoreScale 'auto', 'probability' or 'logit' but received ${describeValue(scaleOption)}`);
  }
  if (rows.length === 0) throw new RangeError('Expected at least one prediction row but received 0');
  const warnings: string[] = [];

  const units = aggregateByPatient(
    rows.map((r) => ({ target: r.target, score: r.score, patientId: r.patientId ?? null, fold: r.fold ?? null, imageName: r.imageName })),
    aggregation,
  );
  const scoreScale: ScoreScale = scaleOption !== 'auto' ? scaleOption : units.every((u) => u.score >= 0 && u.score <= 1) ? 'probability' : 'logit';
  if (scaleOption === 'auto' && scoreScale === 'logit') {
    // Name them: one stray value in a file of probabilities switches the whole file to logits.
    const outside = rows.filter((r) => r.score < 0 || r.score > 1);
    const examples = outside.slice(0, 3).map((r) => `${r.imageName ?? '?'} ${r.score}`).join(', ');
    warnings.push(
      `Scores outside [0, 1] were read as logits; calibration uses sigmoid(score). ${outside.length} of ${rows.length} lie outside (${examples}${outside.length > 3 ? ', ...' : ''}); ` +
        'if the file holds probabilities, those rows are wrong: fix them, or pass --score-scale probability to have them refused.',
    );
  }
  if (scoreScale === 'probability' && units.some((u) => u.score < 0 || u.score > 1)) {
    throw new RangeError('Expected scores in [0, 1] with scoreScale "probability" but some scores lie outside');
  }
  const threshold = checkNumber(options.threshold ?? (scoreScale === 'probability' ? 0.5 : 0), 'threshold', Number.isFinite, 'a finite number');
  const sensitivities = checkNumberList(options.sensitivities ?? [0.8, 0.9, 0.95], 'sensitivities', (v) => v > 0 && v <= 1, 'a number in (0, 1]');
  const thresholds = checkNumberList(options.thresholds ?? [], 'thresholds', Number.isFinite, 'a finite number');

  const y = Uint8Array.from(units, (u) => u.target);
  const s = Float64Array.from(units, (u) => u.score);
  const g = rankGroups(y, s);
  if (g.nPos === 0 || g.nNeg === 0) {
    throw new UndefinedMetricError(
      `Cannot evaluate: AUC and operating points need both classes but the predictions have ${g.nPos} melanoma${g.nPos === 1 ? '' : 's'} and ${g.nNeg} benign ${aggregation === 'none' ? 'images' : 'patients'}`,
    );
  }

  const patientIds = rows.every((r) => r.patientId !== undefined) ? new Set(rows.map((r) => r.patientId)) : null;
  const folds = rows.every((r) => r.fold !== undefined) ? new Set(rows.map((r) => r.fold)) : null;
  if (!folds && rows.some((r) => r.fold !== undefined)) warnings.push('Only some rows have a fold; the cross-validation summary is skipped.');

  let delong: Evaluation['auc']['delong'] = null;
  let delongReason: string | null = null;
  try {
    const d = delongFromGroups(g, level);
    delong = { se: d.se, ci: d.ci, level: d.level };
  } catch (e) {
    if (!(e instanceof UndefinedMetricError)) throw e;
    delongReason = e.message;
  }

  let boot: BootstrapResult | null = null;
  if (replicates > 0) {
    // Patients are resampled: the images of each (with patient ids), or the aggregated units, one per patient.
    const groups = aggregation !== 'none' ? units.map((u) => u.id) : patientIds ? units.map((_, i) => rows[i].patientId as string) : undefined;
    boot = bootstrapAuc(y, s, { groups, replicates, seed, level, minTpr });
    if (aggregation === 'none' && !patientIds) warnings.push('No patient_id column: the bootstrap resamples images, which understates uncertainty when patients have several images.');
    if (boot.validReplicates < replicates) warnings.push(`${replicates - boot.validReplicates} of ${replicates} bootstrap replicates drew a single class and were skipped.`);
  }

  const probs = scoreScale === 'probability' ? s : Float64Array.from(s, sigmoid);
  let calibration: Evaluation['calibration'] = null;
  let calibrationReason: string | null = null;
  try {
    const summary = calibrationSummary(y, probs, { bins: calibrationBins });
    let temperatureScaling: NonNullable<Evaluation['calibration']>['temperatureScaling'] = null;
    let temperatureReason: string | null = null;
    try {
      const logits = scoreScale === 'logit' ? s : Float64Array.from(s, (p) => logit(p));
      const fit = fitTemperature(y, logits);
      const calibrated = applyTemperature(logits, fit.temperature);
      temperatureScaling = {
        temperature: fit.temperature,
        nllBefore: fit.nllBefore,
        nllAfter: fit.nllAfter,
        eceAfter: expectedCalibrationError(y, calibrated, calibrationBins),
        brierAfter: brierScore(y, calibrated),
        bins: calibrationSummary(y, calibrated, { bins: calibrationBins }).bins,
      };
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
      temperatureReason = e.message;
    }
    calibration = { ...summary, temperatureScaling, temperatureReason };
  } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    calibrationReason = e.message;
  }

  const hist = histogram(units, scoreScale, 30);

  let crossValidation: Evaluation['crossValidation'] = null;
  // One fold (a single run's validation predictions) is no cross-validation to summarise.
  if (folds && folds.size > 1) {
    const cv = crossValidationSummary(
      rows.map((r) => ({ target: r.target, score: r.score, patientId: r.patientId ?? null, fold: r.fold!, imageName: r.imageName })),
      { aggregation, level },
    );
    const unitsByFold = new Map<string, AggregatedRow[]>();
    for (const u of units) unitsByFold.set(u.fold!, [...(unitsByFold.get(u.fold!) ?? []), u]);
    crossValidation = {
      folds: cv.folds.map((f) => {
        const list = unitsByFold.get(f.fold)!;
        const fg = rankGroups(Uint8Array.from(list, (u) => u.target), Float64Array.from(list, (u) => u.score));
        return { ...f, roc: f.auc === null ? null : rocJson(fg) };
      }),
      meanAuc: cv.meanAuc,
      sdAuc: cv.sdAuc,
      pooledAuc: cv.pooled.auc,
      pooledDelong: cv.pooled.delong ? { se: cv.pooled.delong.se, ci: cv.pooled.delong.ci, level: cv.pooled.delong.level } : null,
      patientsInSeveralFolds: cv.patientsInSeveralFolds,
    };
    crossValidation.folds.sort((a, b) => compareFolds(a.fold, b.fold));
    if (cv.patientsInSeveralFolds.length) {
      warnings.push(
        `${cv.patientsInSeveralFolds.length} patient(s) appear in more than one fold (e.g. ${cv.patientsInSeveralFolds.slice(0, 3).join(', ')}): the folds are not patient-grouped, so fold AUCs may be optimistic.`,
      );
    }
  }

  const atTargetSensitivity = { ...sensitivityPointFromGroups(g, targetSensitivity), targetSensitivity };
  return {
    schema: EVALUATION_SCHEMA,
    createdAt: new Date().toISOString(),
    source: options.source ?? null,
    options: { threshold, targetSensitivity, sensitivities, thresholds, patientAggregation: aggregation, bootstrap: replicates, seed, level, minTpr, calibrationBins, scoreScale },
    unit: aggregation === 'none' ? 'image' : 'patient',
    counts: {
      rows: rows.length,
      units: units.length,
      positives: g.nPos,
      negatives: g.nNeg,
      prevalence: g.nPos / (g.nPos + g.nNeg),
      patients: patientIds ? patientIds.size : null,
      folds: folds ? folds.size : null,
    },
    auc: {
      value: aucFromGroups(g),
      delong,
      delongReason,
      bootstrap: boot
        ? { unit: boot.unit, units: boot.units, replicates: boot.replicates, validReplicates: boot.validReplicates, seed: boot.seed, level: boot.level, ci: boot.auc.ci, se: boot.auc.se }
        : null,
    },
    partialAuc: { minTpr, max: 1 - minTpr, value: partialAucFromGroups(g, minTpr), bootstrapCi: boot ? boot.partialAuc.ci : null },
    roc: rocJson(g),
    operatingPoints: {
      atThreshold: operatingPointAtThreshold(y, s, threshold),
      atTargetSensitivity,
      youden: youdenPointFromGroups(g),
      atSensitivities: sensitivities.map((target) => ({ ...sensitivityPointFromGroups(g, target), targetSensitivity: target })),
      atThresholds: thresholds.map((t) => operatingPointAtThreshold(y, s, t)),
    },
    calibration,
    calibrationReason,
    histogram: hist,
    hardestCases: hardestCases(units, atTargetSensitivity.threshold),
    crossValidation,
    warnings,
  };
}
