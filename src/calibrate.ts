/**
 * Second-stage models fitted on out-of-fold predictions, applied at `predict` time.
 *
 * - `platt`: sigmoid(a * logit + b). Class-weighted training (pos_weight ~55 on ISIC 2020)
 *   shifts every logit by about log(pos_weight) and stretches it, so a raw score is not a risk;
 *   a temperature alone cannot remove a shift, a slope and an intercept can.
 * - `patient-context`: a logistic model over the image's logit and the logits of the same
 *   patient's other lesions (their mean and maximum, and how many there are). It learns how far
 *   a lesion stands out from that patient's others, the dermatologist's "ugly duckling" sign,
 *   and it needs every image's patient_id at prediction time.
 *
 * Both are judged honestly before they are trusted: the fit is cross-fitted (each fold scored by
 * a model fitted on the other folds), and the report compares those scores with the raw ones.
 */
import { promises as fsp } from 'fs';
import { stratifiedGroupKFold } from './folds';
import { rocAuc } from './metrics/auc';
import { binaryNll, brierScore, expectedCalibrationError, logit, sigmoid } from './metrics/calibration';
import { DelongTestResult, delongTest } from './metrics/delong';
import { LogisticModel, fitLogisticRegression, linearPredictor } from './metrics/logistic';
import { operatingPointForSensitivity } from './metrics/operating-points';
import { describeValue } from './metrics/validate';
import type { PredictionRow } from './report/predictions-csv';

export const CALIBRATOR_KINDS = ['platt', 'patient-context', 'patient-embedding'] as const;
export type CalibratorKind = (typeof CALIBRATOR_KINDS)[number];

/** The features of each kind, in the order of the weights. */
export const CALIBRATOR_FEATURES: Record<CalibratorKind, readonly string[]> = {
  platt: ['logit'],
  'patient-context': ['logit', 'others_mean_logit', 'others_max_logit', 'has_others', 'log1p_others'],
  // Patient context plus how far the lesion's embedding lies from the patient's other lesions'
  // (`melanoma embed`'s ugly_duckling, 0 for a patient's only lesion).
  'patient-embedding': ['logit', 'others_mean_logit', 'others_max_logit', 'has_others', 'log1p_others', 'ugly_duckling'],
};

/** Sensitivities whose cross-fitted thresholds every calibrator records. */
export const CALIBRATOR_SENSITIVITIES = [0.8, 0.9, 0.95] as const;

const FORMAT = 'melanoma-calibrator';

/** How well a set of probabilities ranks and how well it is calibrated. */
export interface ScoreQuality {
  auc: number;
  /** Mean binary cross-entropy. */
  nll: number;
  brier: number;
  /** Expected calibration error over 10 equal-count bins. */
  ece: number;
  meanPredicted: number;
}

export interface CalibrationReport {
  images: number;
  melanomas: number;
  patients: number | null;
  /** Images whose patient has other images in the set (null without patient ids). */
  imagesWithOtherLesions: number | null;
  /** How the cross-fit was split: the file's fold column, or patient-level folds made here. */
  crossFitBy: 'fold' | 'patient' | 'image';
  crossFitFolds: number;
  observedRate: number;
  raw: ScoreQuality;
  crossFitted: ScoreQuality;
  /** Paired DeLong test, cross-fitted minus raw AUC. */
  aucChange: Pick<DelongTestResult, 'difference' | 'ci' | 'pValue' | 'level'>;
  warnings: string[];
}

export interface CalibratorOperatingPoint {
  targetSensitivity: number;
  /** Threshold on the calibrated probability. */
  threshold: number;
  /** Cross-fitted estimates at that threshold. */
  sensitivity: number;
  specificity: number;
}

/** The calibrator file: what predict needs, plus how it was made and how well it did. */
export interface Calibrator extends LogisticModel {
  format: typeof FORMAT;
  version: 1;
  kind: CalibratorKind;
  features: string[];
  l2: number;
  fittedOn: { file: string; scoreScale: 'probability' | 'logit' };
  report: CalibrationReport;
  operatingPoints: CalibratorOperatingPoint[];
}

/** A calibrator file that cannot be used, or input a calibrator cannot score. */
export class CalibratorError extends RangeError {
  override name = 'CalibratorError';
}

export interface ScoredImage {
  /** The model's logit (or logit of its probability). */
  logit: number;
  /** Required by patient-context and patient-embedding; '' or undefined means unknown. */
  patientId?: string;
  /** Required by patient-embedding for every image whose patient has others (see src/embed.ts). */
  uglyDuckling?: number | null;
  /** Named in messages about this image, when known. */
  imageName?: string;
}

/** Feature rows of one kind for a set of images; patient context is counted within the set. */
export function calibratorFeatures(kind: CalibratorKind, images: readonly ScoredImage[], what = 'the images'): number[][] {
  if (kind === 'platt') return images.map((image) => [image.logit]);
  const named = (image: ScoredImage, i: number) => `image ${i + 1}${image.imageName ? ` (${image.imageName})` : ''}`;
  const byPatient = new Map<string, number[]>();
  images.forEach((image, i) => {
    if (!image.patientId) {
      throw new CalibratorError(`The ${kind} calibrator needs every image's patient_id, but ${named(image, i)} of ${what} has none: pass data with patient ids (a test.csv or TFRecords), or use a platt calibrator`);
    }
    const members = byPatient.get(image.patientId);
    if (members) members.push(i);
    else byPatient.set(image.patientId, [i]);
  });
  return images.map((image, i) => {
    const others = byPatient.get(image.patientId as string)!.filter((j) => j !== i);
    let row: number[];
    if (others.length === 0) row = [image.logit, 0, 0, 0, 0];
    else {
      let sum = 0, max = -Infinity;
      for (const j of others) {
        sum += images[j].logit;
        max = Math.max(max, images[j].logit);
      }
      row = [image.logit, sum / others.length, max, 1, Math.log1p(others.length)];
    }
    if (kind === 'patient-context') return row;
    const ugly = image.uglyDuckling;
    if (others.length > 0 && (typeof ugly !== 'number' || !Number.isFinite(ugly)))
      throw new CalibratorError(`The patient-embedding calibrator needs the ugly-duckling distance of every image with other lesions, but ${named(image, i)} of ${what} has none: give the images.csv of \`melanoma embed\` (--ugly-duckling)`);
    return [...row, others.length > 0 ? (ugly as number) : 0];
  });
}

function scoreQuality(labels: Uint8Array, probabilities: Float64Array): ScoreQuality {
  const logits = Float64Array.from(probabilities, (p) => logit(p, 1e-12));
  return {
    auc: rocAuc(labels, probabilities),
    nll: binaryNll(labels, logits),
    brier: brierScore(labels, probabilities),
    ece: expectedCalibrationError(labels, probabilities, 10),
    meanPredicted: probabilities.reduce((s, p) => s + p, 0) / probabilities.length,
  };
}

/** Rows of a predictions file as logits: scores all in [0, 1] are probabilities, else logits. */
export function rowsAsLogits(rows: readonly PredictionRow[]): { logits: Float64Array; scoreScale: 'probability' | 'logit' } {
  if (rows.some((r) => r.scoreScale === 'rank'))
    throw new CalibratorError('These scores are normalised ranks (a rank ensemble), not probabilities or logits: calibrate a mean ensemble (melanoma ensemble --mode mean) instead');
  const scoreScale = rows.every((r) => r.score >= 0 && r.score <= 1) ? 'probability' : 'logit';
  return { logits: Float64Array.from(rows, (r) => (scoreScale === 'probability' ? logit(r.score, 1e-12) : r.score)), scoreScale };
}

/** Cross-fit groups: the file's folds when it has several, else patient-level (or image-level) folds. */
function crossFitGroups(rows: readonly PredictionRow[], labels: Uint8Array): { groups: string[]; by: CalibrationReport['crossFitBy'] } {
  const folds = rows.every((r) => r.fold !== undefined) ? new Set(rows.map((r) => r.fold)) : null;
  if (folds && folds.size >= 2) return { groups: rows.map((r) => r.fold as string), by: 'fold' };
  const byPatient = rows.every((r) => r.patientId);
  const samples = rows.map((r, i) => ({ imageName: r.imageName, patientId: byPatient ? (r.patientId as string) : r.imageName, target: labels[i] as 0 | 1 }));
  const units = new Set(samples.map((s) => s.patientId)).size;
  const assignment = stratifiedGroupKFold(samples, Math.min(5, units), 0);
  return { groups: assignment.map((a) => String(a.fold)), by: byPatient ? 'patient' : 'image' };
}

export interface FitCalibratorOptions {
  kind?: CalibratorKind;
  /** patient-embedding: each image's ugly-duckling distance by image_name (from `melanoma embed`). */
  uglyDuckling?: ReadonlyMap<string, number | null>;
  l2?: number;
  /** Names the source in the file and in messages. */
  source?: string;
}

export interface FitCalibratorResult {
  calibrator: Calibrator;
  /** Each row scored by the model fitted without its fold: the honest calibrated scores. */
  crossFitted: Float64Array;
}

/** Rows built in code may hold anything: a target other than 0/1 or a missing score would be fitted silently. */
function checkPredictionRows(rows: readonly PredictionRow[], source: string): void {
  if (!Array.isArray(rows)) throw new TypeError(`Expected an array of prediction rows ({ imageName, target, score }) for rows but received ${rows === null ? 'null' : typeof rows}`);
  rows.forEach((r, i) => {
    const which = `row ${i + 1}${typeof r?.imageName === 'string' ? ` (${r.imageName})` : ''}`;
    if (r?.target !== 0 && r?.target !== 1)
      throw new CalibratorError(`${source}: ${which} has target ${describeValue(r?.target)}: every row needs target 1 (melanoma) or 0 (benign)`);
    if (typeof r.score !== 'number' || !Number.isFinite(r.score))
      throw new CalibratorError(`${source}: ${which} has score ${describeValue(r.score)}: every row needs a finite score, a probability or a logit (from Trainer.predict: { score: p.logit })`);
  });
}

/**
 * Fits a calibrator on labelled out-of-fold predictions (one row per image, each scored by a
 * model that did not train on it), cross-fits it to measure what it does, and records the
 * thresholds that reached 80/90/95% sensitivity in the cross-fit.
 */
export function fitCalibrator(rows: readonly PredictionRow[], options: FitCalibratorOptions = {}): FitCalibratorResult {
  const kind = options.kind ?? 'platt';
  if (!(CALIBRATOR_KINDS as readonly string[]).includes(kind)) throw new RangeError(`Expected kind ${CALIBRATOR_KINDS.join(' or ')} but received '${String(kind)}'`);
  const l2 = options.l2 ?? 1;
  const source = options.source ?? '<predictions>';
  checkPredictionRows(rows, source);
  const labels = Uint8Array.from(rows, (r) => r.target);
  const melanomas = labels.reduce((s, v) => s + v, 0);
  if (melanomas < 2 || rows.length - melanomas < 2) {
    throw new CalibratorError(`${source}: a calibrator needs at least 2 melanomas and 2 benign images but it has ${melanomas} and ${rows.length - melanomas}`);
  }
  const { logits, scoreScale } = rowsAsLogits(rows);
  if (kind === 'patient-embedding' && !options.uglyDuckling)
    throw new CalibratorError(`${source}: the patient-embedding calibrator needs each image's ugly-duckling distance: run \`melanoma embed\` on the cv folder and pass its images.csv (--ugly-duckling)`);
  // Given to another kind, the distances would go unused without a word.
  if (kind !== 'patient-embedding' && options.uglyDuckling)
    throw new CalibratorError(`The ${kind} calibrator does not use ugly-duckling distances (--ugly-duckling): pass --kind patient-embedding to fit on them, or leave them out`);
  const images = rows.map((r, i) => ({ logit: logits[i], patientId: r.patientId, uglyDuckling: options.uglyDuckling?.get(r.imageName), imageName: r.imageName }));
  const features = calibratorFeatures(kind, images, source);

  const { groups, by } = crossFitGroups(rows, labels);
  const crossFitted = new Float64Array(rows.length);
  const distinct = [...new Set(groups)];
  for (const held of distinct) {
    const train = groups.flatMap((g, i) => (g === held ? [] : [i]));
    const trainLabels = train.map((i) => labels[i]);
    const positives = trainLabels.reduce((s: number, v) => s + v, 0);
    if (positives === 0 || positives === train.length) {
      throw new CalibratorError(`${source}: cross-fitting needs both classes outside every fold, but outside fold ${held} there ${positives === 0 ? 'are no melanomas' : 'are no benign images'}`);
    }
    const model = fitLogisticRegression(train.map((i) => features[i]), trainLabels, { l2 });
    groups.forEach((g, i) => {
      if (g === held) crossFitted[i] = sigmoid(linearPredictor(model, features[i]));
    });
  }
  const model = fitLogisticRegression(features, labels, { l2 });
  // A Platt map with a slope <= 0 would reverse (or erase) the ranking of every test set.
  if (kind === 'platt' && !(model.weights[0] > 0))
    throw new CalibratorError(
      `${source}: the fitted slope is ${model.weights[0].toFixed(4)}, so calibrating would ${model.weights[0] < 0 ? 'reverse' : 'erase'} the ranking: these scores do not rank melanomas above benign lesions (AUC ${rocAuc(labels, logits).toFixed(3)}); check the model and the targets before calibrating`,
    );
  const raw = Float64Array.from(logits, sigmoid);
  const test = delongTest(labels, crossFitted, raw);
  const withPatients = rows.every((r) => r.patientId);
  const patients = withPatients ? new Set(rows.map((r) => r.patientId)).size : null;
  const imagesPerPatient = new Map<string, number>();
  if (withPatients) for (const r of rows) imagesPerPatient.set(r.patientId as string, (imagesPerPatient.get(r.patientId as string) ?? 0) + 1);
  const imagesWithOtherLesions = withPatients ? rows.filter((r) => imagesPerPatient.get(r.patientId as string)! > 1).length : null;
  const warnings: string[] = [];
  if (kind !== 'platt' && !(model.weights[0] > 0)) {
    warnings.push(`The weight of the image's own logit is ${model.weights[0].toFixed(4)} (not positive): the model's scores carry little of this fit; check the model before using it`);
  }
  if (kind !== 'platt' && imagesWithOtherLesions === 0) {
    warnings.push('Every patient has a single image here, so the patient-context features are constant: this model is a Platt map and learns nothing about patients');
  }
  const report: CalibrationReport = {
    images: rows.length,
    melanomas,
    patients,
    imagesWithOtherLesions,
    crossFitBy: by,
    crossFitFolds: distinct.length,
    observedRate: melanomas / rows.length,
    raw: scoreQuality(labels, raw),
    crossFitted: scoreQuality(labels, crossFitted),
    aucChange: { difference: test.difference, ci: test.ci, pValue: test.pValue, level: test.level },
    warnings,
  };
  const operatingPoints = CALIBRATOR_SENSITIVITIES.map((target) => {
    const point = operatingPointForSensitivity(labels, crossFitted, target);
    return { targetSensitivity: target, threshold: point.threshold, sensitivity: point.sensitivity as number, specificity: point.specificity as number };
  });
  const calibrator: Calibrator = {
    format: FORMAT,
    version: 1,
    kind,
    features: [...CALIBRATOR_FEATURES[kind]],
    weights: model.weights,
    intercept: model.intercept,
    l2,
    fittedOn: { file: source, scoreScale },
    report,
    operatingPoints,
  };
  return { calibrator, crossFitted };
}

/** Calibrated probabilities for a set of images (patient context is counted within the set). */
export function applyCalibrator(calibrator: Calibrator, images: readonly ScoredImage[], what = 'the images'): Float64Array {
  images.forEach((image, i) => {
    if (typeof image?.logit !== 'number' || !Number.isFinite(image.logit))
      throw new CalibratorError(`image ${i + 1} of ${what} has logit ${describeValue(image?.logit)}: the calibrator needs each image's finite logit (Trainer.predict gives it as logit)`);
  });
  const features = calibratorFeatures(calibrator.kind, images, what);
  return Float64Array.from(features, (row) => sigmoid(linearPredictor(calibrator, row)));
}

/** Reads and checks a calibrator file; every refusal names the file and what is wrong. */
export async function readCalibrator(file: string): Promise<Calibrator> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new CalibratorError(err.code === 'ENOENT' ? `Calibrator ${file} does not exist: make one with \`melanoma calibrate OOF_PREDICTIONS --out ${file}\`` : `Cannot read calibrator ${file}: ${err.message}`);
  }
  let value: Partial<Calibrator>;
  try {
    value = JSON.parse(text) as Partial<Calibrator>;
  } catch (e) {
    throw new CalibratorError(`Calibrator ${file} is not valid JSON (${(e as Error).message}): it should be a file written by \`melanoma calibrate\``);
  }
  const bad = (what: string) => new CalibratorError(`Calibrator ${file} ${what}: it should be a file written by \`melanoma calibrate\``);
  if (value === null || typeof value !== 'object' || value.format !== FORMAT) throw bad(`has no "format": "${FORMAT}"`);
  if (value.version !== 1) throw bad(`has version ${JSON.stringify(value.version)}, and this build reads version 1`);
  if (!(CALIBRATOR_KINDS as readonly unknown[]).includes(value.kind)) throw bad(`has kind ${JSON.stringify(value.kind)}, expected ${CALIBRATOR_KINDS.join(' or ')}`);
  const expected = CALIBRATOR_FEATURES[value.kind as CalibratorKind];
  if (!Array.isArray(value.features) || value.features.join() !== expected.join()) throw bad(`lists features ${JSON.stringify(value.features)}, expected ${JSON.stringify(expected)} for ${value.kind}`);
  const finite = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  if (!Array.isArray(value.weights) || value.weights.length !== expected.length || !value.weights.every(finite)) throw bad(`needs ${expected.length} finite weights`);
  if (!finite(value.intercept)) throw bad('needs a finite intercept');
  return value as Calibrator;
}
