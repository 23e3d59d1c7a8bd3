import {
  aggregateByPatient, bootstrapAuc, calibrationSummary, delongCi, operatingPointAtThreshold, operatingPointForSensitivity, partialAuc, rocAuc,
  youdenOperatingPoint,
} from '../../src/metrics';
import { evaluatePredictions, operatingPointRows } from '../../src/report/evaluation';
import { renderMarkdownReport } from '../../src/report/markdown';
import { parsePredictionsCsv, PredictionRow } from '../../src/report/predictions-csv';
import { syntheticPredictionsCsv } from './fixtures';

const rows = parsePredictionsCsv(syntheticPredictionsCsv({ patients: 300, seed: 3 }));
const y = rows.map((r) => r.target);
const s = rows.map((r) => r.score);

describe('evaluatePredictions', () => {
  const e = evaluatePredictions(rows, { bootstrap: 200, seed: 11 });

  test('agrees with the metric functions it summarises', () => {
    expect(e.unit).toBe('image');
    expect(e.counts).toMatchObject({ rows: rows.length, units: rows.length, positives: y.filter((v) => v === 1).length, folds: 5 });
    expect(e.counts.patients).toBe(new Set(rows.map((r) => r.patientId)).size);
    expect(e.auc.value).toBe(rocAuc(y, s));
    const d = delongCi(y, s);
    expect(e.auc.delong).toEqual({ se: d.se, ci: d.ci, level: 0.95 });
    expect(e.partialAuc.value).toBe(partialAuc(y, s));
    const b = bootstrapAuc(y, s, { groups: rows.map((r) => r.patientId!), replicates: 200, seed: 11 });
    expect(e.auc.bootstrap).toMatchObject({ unit: 'patient', ci: b.auc.ci, replicates: 200 });
    expect(e.partialAuc.bootstrapCi).toEqual(b.partialAuc.ci);
    expect(e.operatingPoints.atThreshold).toEqual(operatingPointAtThreshold(y, s, 0.5));
    expect(e.operatingPoints.atTargetSensitivity).toEqual({ ...operatingPointForSensitivity(y, s, 0.95), targetSensitivity: 0.95 });
    expect(e.operatingPoints.youden).toEqual(youdenOperatingPoint(y, s));
    expect(e.calibration!.ece).toBe(calibrationSummary(y, s).ece);
    expect(e.calibration!.temperatureScaling!.nllAfter).toBeLessThanOrEqual(e.calibration!.temperatureScaling!.nllBefore);
    expect(e.histogram.benign.reduce((a, c) => a + c, 0) + e.histogram.melanoma.reduce((a, c) => a + c, 0)).toBe(rows.length);
  });

  test('cross-validation block: folds in order with ROC curves, pooled AUC = overall AUC', () => {
    const cv = e.crossValidation!;
    expect(cv.folds.map((f) => f.fold)).toEqual(['0', '1', '2', '3', '4']);
    for (const f of cv.folds) {
      const sub = rows.filter((r) => r.fold === f.fold);
      expect(f.auc).toBe(rocAuc(sub.map((r) => r.target), sub.map((r) => r.score)));
      expect(f.roc!.fpr[f.roc!.fpr.length - 1]).toBe(1);
    }
    expect(cv.pooledAuc).toBe(e.auc.value);
  });

  test('JSON round trip is lossless (no NaN, Infinity or typed arrays)', () => {
    const json = JSON.parse(JSON.stringify(e));
    expect(json).toEqual(e);
    expect(e.roc.thresholds[0]).toBeNull();
    expect(Array.isArray(e.roc.fpr)).toBe(true);
  });

  test('per-patient aggregation evaluates patients', () => {
    const p = evaluatePredictions(rows, { patientAggregation: 'max', bootstrap: 0 });
    const agg = aggregateByPatient(rows.map((r) => ({ ...r, fold: r.fold ?? null })), 'max');
    expect(p.unit).toBe('patient');
    expect(p.counts.units).toBe(agg.length);
    expect(p.auc.value).toBe(rocAuc(agg.map((a) => a.target), agg.map((a) => a.score)));
    expect(p.auc.bootstrap).toBeNull();
    // With a bootstrap: it resamples those patients, and says so.
    const booted = evaluatePredictions(rows, { patientAggregation: 'max', bootstrap: 50 });
    expect(booted.auc.bootstrap).toMatchObject({ unit: 'patient', units: agg.length, replicates: 50 });
  });

  test('logit scores are detected and calibration goes through the sigmoid', () => {
    // Probabilities of exactly 0 or 1 (rounded in the CSV) are clipped to keep the logits finite.
    const clip = (p: number): number => Math.min(1 - 1e-9, Math.max(1e-9, p));
    const logits: PredictionRow[] = rows.map((r) => ({ ...r, score: Math.log(clip(r.score) / (1 - clip(r.score))) }));
    const l = evaluatePredictions(logits, { bootstrap: 0 });
    expect(l.options.scoreScale).toBe('logit');
    expect(l.options.threshold).toBe(0);
    expect(l.auc.value).toBeCloseTo(e.auc.value, 12);
    const warning = l.warnings.find((w) => w.startsWith('Scores outside [0, 1] were read as logits; calibration uses sigmoid(score). '));
    const outside = logits.filter((r) => r.score < 0 || r.score > 1);
    expect(warning).toContain(`${outside.length} of ${logits.length} lie outside (${outside[0].imageName} ${outside[0].score}, `);
    expect(l.calibration!.brier).toBeCloseTo(e.calibration!.brier, 9);
  });

  test('one stray score in a file of probabilities is named in the warning', () => {
    const stray = rows.map((r, i) => (i === 7 ? { ...r, score: 1.7 } : r));
    const warning = evaluatePredictions(stray, { bootstrap: 0 }).warnings.find((w) => w.startsWith('Scores outside'));
    expect(warning).toBe(
      `Scores outside [0, 1] were read as logits; calibration uses sigmoid(score). 1 of ${rows.length} lie outside (${rows[7].imageName ?? '?'} 1.7); ` +
        'if the file holds probabilities, those rows are wrong: fix them, or pass --score-scale probability to have them refused.',
    );
  });

  test("one fold (a single run's validation predictions) is no cross-validation", () => {
    const single = evaluatePredictions(rows.map((r) => ({ ...r, fold: '0' })), { bootstrap: 0 });
    expect(single.crossValidation).toBeNull();
    expect(single.counts.folds).toBe(1);
    expect(single.warnings.filter((w) => /fold/.test(w))).toEqual([]);
  });

  test('no patient ids: image bootstrap with a warning', () => {
    const bare = rows.map(({ imageName, target, score }) => ({ imageName, target, score }));
    const b = evaluatePredictions(bare, { bootstrap: 50 });
    expect(b.auc.bootstrap!.unit).toBe('image');
    expect(b.crossValidation).toBeNull();
    expect(b.warnings.some((w) => w.startsWith('No patient_id column'))).toBe(true);
  });

  test('EXPECTED FAILURE: one class, unknown option, bad values', () => {
    const benign = rows.filter((r) => r.target === 0);
    expect(() => evaluatePredictions(benign)).toThrow(
      new RangeError(`Cannot evaluate: AUC and operating points need both classes but the predictions have 0 melanomas and ${benign.length} benign images`),
    );
    expect(() => evaluatePredictions(rows, { bootstraps: 5 } as never)).toThrow(
      new TypeError("Unknown evaluation option 'bootstraps': did you mean 'bootstrap'? (options: threshold, targetSensitivity, sensitivities, thresholds, patientAggregation, bootstrap, seed, level, minTpr, calibrationBins, scoreScale, source)"),
    );
    expect(() => evaluatePredictions(rows, { bootstrap: -1 })).toThrow(new RangeError('Expected a non-negative integer for bootstrap but received -1'));
    expect(() => evaluatePredictions(rows, { targetSensitivity: 0 })).toThrow(new RangeError('Expected a number in (0, 1] for targetSensitivity but received 0'));
    expect(() => evaluatePredictions([])).toThrow('Expected at least one prediction row but received 0');
  });
});

describe('the operating-point table', () => {
  test('each chosen sensitivity and threshold gets its row, sorted, without repeats', () => {
    const e = evaluatePredictions(rows, { bootstrap: 0, sensitivities: [0.9, 0.5, 0.9], thresholds: [0.7, 0.3, 0.5] });
    const y = rows.map((r) => r.target);
    const scores = rows.map((r) => r.score);
    expect(e.options.sensitivities).toEqual([0.5, 0.9]);
    expect(e.operatingPoints.atSensitivities).toEqual([0.5, 0.9].map((t) => ({ ...operatingPointForSensitivity(y, scores, t), targetSensitivity: t })));
    expect(e.operatingPoints.atThresholds).toEqual([0.3, 0.5, 0.7].map((t) => operatingPointAtThreshold(y, scores, t)));
    // The fixed threshold 0.5 and the target sensitivity 95% are in the table once each.
    expect(operatingPointRows(e).map((r) => r.name)).toEqual([
      'Sensitivity ≥ 95%', 'Sensitivity ≥ 50%', 'Sensitivity ≥ 90%', 'Youden optimum', 'Fixed threshold 0.5', 'Fixed threshold 0.3', 'Fixed threshold 0.7',
    ]);
    const md = renderMarkdownReport(e);
    const t = e.operatingPoints.atThresholds[0];
    expect(md).toContain(`| Fixed threshold 0.3 | 0.3 | ${(100 * t.sensitivity!).toFixed(1)}% | ${(100 * t.specificity!).toFixed(1)}% |`);
  });

  test('bad entries are named', () => {
    expect(() => evaluatePredictions(rows, { bootstrap: 0, sensitivities: [0.9, 1.5] })).toThrow('Expected a number in (0, 1] for sensitivities[1] but received 1.5');
    expect(() => evaluatePredictions(rows, { bootstrap: 0, thresholds: [NaN] })).toThrow('Expected a finite number for thresholds[0] but received NaN');
    expect(() => evaluatePredictions(rows, { bootstrap: 0, thresholds: 0.5 as unknown as number[] })).toThrow('Expected an array, each entry a finite number, for thresholds but received 0.5');
  });
});

describe('hardest cases', () => {
  test('at the target-sensitivity threshold: the melanomas below it, lowest first, and the benign lesions at or above it, highest first', () => {
    const e = evaluatePredictions(rows, { bootstrap: 0, targetSensitivity: 0.8 });
    const threshold = e.operatingPoints.atTargetSensitivity.threshold;
    const missed = rows.filter((r) => r.target === 1 && r.score < threshold).sort((a, b) => a.score - b.score);
    expect(missed.length).toBeGreaterThan(0);
    expect(e.hardestCases.threshold).toBe(threshold);
    expect(e.hardestCases.missedMelanomas.map((c) => c.id)).toEqual(missed.slice(0, 10).map((r) => r.imageName));
    const alarms = rows.filter((r) => r.target === 0 && r.score >= threshold).sort((a, b) => b.score - a.score);
    expect(alarms.length).toBeGreaterThan(0);
    expect(e.hardestCases.falseAlarms).toEqual(alarms.slice(0, 10).map((r) => ({ id: r.imageName, score: r.score, fold: r.fold ?? null })));
    // A strict threshold leaves fewer false alarms than there are top-scored benign lesions to list.
    const strict = evaluatePredictions(rows, { bootstrap: 0, targetSensitivity: 0.1 });
    const benignBelow = rows.filter((r) => r.target === 0 && r.score < strict.hardestCases.threshold);
    expect(benignBelow.length).toBeGreaterThan(0);
    expect(strict.hardestCases.falseAlarms.length).toBeLessThan(10);
    expect(strict.hardestCases.falseAlarms.every((c) => c.score >= strict.hardestCases.threshold)).toBe(true);
    // Per patient, the cases are patients.
    const perPatient = evaluatePredictions(rows, { bootstrap: 0, patientAggregation: 'max' });
    expect(perPatient.hardestCases.falseAlarms.length).toBeGreaterThan(0);
    expect(perPatient.hardestCases.falseAlarms.every((c) => c.id.startsWith('IP_'))).toBe(true);
    const md = renderMarkdownReport(e);
    expect(md).toContain(`Melanomas missed at sensitivity ≥ 80.0% (threshold ${threshold}): ${missed[0].imageName} (`);
  });
});

describe('renderMarkdownReport', () => {
  test('tables carry the evaluation numbers', () => {
    const e = evaluatePredictions(rows, { bootstrap: 0 });
    const md = renderMarkdownReport(e);
    expect(md).toContain(`| ROC AUC | ${e.auc.value.toFixed(3)} | ${e.auc.delong!.ci[0].toFixed(3)}–${e.auc.delong!.ci[1].toFixed(3)} (DeLong, 95%) |`);
    const t = e.operatingPoints.atTargetSensitivity;
    expect(md).toContain(`| Sensitivity ≥ 95% | ${t.threshold} | ${(100 * t.sensitivity!).toFixed(1)}% |`);
    expect(md.split('\n').filter((l) => /^\| \d+ \|/.test(l))).toHaveLength(5);
  });
});
