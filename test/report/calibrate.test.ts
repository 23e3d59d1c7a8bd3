/**
 * Second-stage calibrators (src/calibrate.ts) and `melanoma calibrate`: Platt calibration fixes
 * the inflated probabilities of class-weighted training, patient context uses the patient's other
 * lesions, both are cross-fitted honestly, and the file round-trips with clear refusals.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { applyCalibrator, calibratorFeatures, fitCalibrator, readCalibrator } from '../../src/calibrate';
import { calibratePredictionsFile } from '../../src/cli/calibrate';
import { fitLogisticRegression, linearPredictor, logit, rocAuc, sigmoid } from '../../src/metrics';
import { PredictionRow, parsePredictionsCsv, readPredictionsCsv } from '../../src/report/predictions-csv';
import { lcg } from '../metrics/brute';
import { syntheticPredictionsCsv } from './fixtures';

const CLI = path.resolve(__dirname, '../../dist/cli.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'calibrate-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/**
 * Patients whose scores share a per-patient offset that says nothing about the label (skin type,
 * camera, ...): within a patient, the lesion that stands out is the suspicious one.
 */
function nuisanceOffsetRows(offsetSd: number, seed = 11): PredictionRow[] {
  const r = lcg(seed);
  const normal = () => (r() + r() + r() + r() + r() + r() - 3) * Math.SQRT2;
  const rows: PredictionRow[] = [];
  for (let p = 0; p < 700; p++) {
    const images = 1 + Math.floor(r() * 8);
    const offset = offsetSd * normal();
    for (let i = 0; i < images; i++) {
      const target = r() < 0.06 ? 1 : 0;
      const z = (target ? 1.5 : -1) + offset + normal();
      rows.push({ imageName: `ISIC_${rows.length}`, target, score: sigmoid(2 * z + 2), patientId: `IP_${p}`, fold: String(p % 5) });
    }
  }
  return rows;
}

function labels(rows: readonly PredictionRow[]): number[] {
  return rows.map((r) => r.target);
}

describe('platt', () => {
  const rows = parsePredictionsCsv(syntheticPredictionsCsv({ patients: 900 }));

  test('turns inflated probabilities into calibrated ones, measured cross-fitted', () => {
    const { calibrator, crossFitted } = fitCalibrator(rows, { source: 'synthetic' });
    const { raw, crossFitted: fitted } = calibrator.report;
    expect(calibrator.report.crossFitBy).toBe('fold');
    expect(calibrator.report.crossFitFolds).toBe(5);
    expect(fitted.ece).toBeLessThan(raw.ece / 3);
    expect(fitted.nll).toBeLessThan(raw.nll);
    expect(fitted.brier).toBeLessThan(raw.brier);
    expect(Math.abs(fitted.meanPredicted - calibrator.report.observedRate)).toBeLessThan(0.01);
    expect(raw.meanPredicted).toBeGreaterThan(2 * calibrator.report.observedRate); // the fixture's inflation
    // The fixture's class means (1.9, -1.2) with variance 1.49 give a true log-odds slope of
    // 3.1 / 1.49 in z, and it stored 2.5 z + 2: the fitted slope undoes the stretch.
    expect(Math.abs(calibrator.weights[0] - 3.1 / 1.49 / 2.5)).toBeLessThan(0.12);
    expect(crossFitted).toHaveLength(rows.length);
    // The final map is monotone: the ranking, and so the AUC, of any set is unchanged.
    const applied = applyCalibrator(calibrator, rows.map((r) => ({ logit: logit(r.score, 1e-12) })));
    expect(rocAuc(labels(rows), applied)).toBe(rocAuc(labels(rows), rows.map((r) => r.score)));
  });

  test('each fold is scored by a model fitted on the other folds only', () => {
    const { calibrator, crossFitted } = fitCalibrator(rows);
    const others = rows.filter((r) => r.fold !== '2');
    const model = fitLogisticRegression(others.map((r) => [logit(r.score, 1e-12)]), labels(others), { l2: calibrator.l2 });
    rows.forEach((r, i) => {
      if (r.fold === '2') expect(crossFitted[i]).toBeCloseTo(sigmoid(linearPredictor(model, [logit(r.score, 1e-12)])), 12);
    });
    // ... and not by the model fitted on everything.
    const i = rows.findIndex((r) => r.fold === '2');
    expect(crossFitted[i]).not.toBe(applyCalibrator(calibrator, [{ logit: logit(rows[i].score, 1e-12) }])[0]);
  });

  test('without several folds it cross-fits over patient-level folds, without patients over images', () => {
    const oneFold = rows.map((r) => ({ ...r, fold: '0' }));
    expect(fitCalibrator(oneFold).calibrator.report).toMatchObject({ crossFitBy: 'patient', crossFitFolds: 5 });
    const bare = rows.map(({ imageName, target, score }) => ({ imageName, target, score }));
    expect(fitCalibrator(bare).calibrator.report).toMatchObject({ crossFitBy: 'image', crossFitFolds: 5, patients: null, imagesWithOtherLesions: null });
  });

  test('records the thresholds that reached each sensitivity in the cross-fit', () => {
    const { calibrator, crossFitted } = fitCalibrator(rows);
    expect(calibrator.operatingPoints.map((p) => p.targetSensitivity)).toEqual([0.8, 0.9, 0.95]);
    const positives = rows.flatMap((r, i) => (r.target === 1 ? [crossFitted[i]] : []));
    for (const p of calibrator.operatingPoints) {
      expect(p.sensitivity).toBeGreaterThanOrEqual(p.targetSensitivity);
      expect(positives.filter((s) => s >= p.threshold).length / positives.length).toBe(p.sensitivity);
    }
  });

  test('refuses scores that rank melanomas below benign lesions (a slope <= 0 would reverse every ranking)', () => {
    const reversed = rows.map((r) => ({ ...r, score: 1 - r.score }));
    expect(() => fitCalibrator(reversed, { source: 'reversed.csv' })).toThrow(/^reversed\.csv: the fitted slope is -\d\.\d{4}, so calibrating would reverse the ranking: these scores do not rank melanomas above benign lesions \(AUC 0\.\d{3}\)/);
  });

  test('refuses normalised ranks (a rank ensemble) for what they are', () => {
    const ranks = rows.map((r) => ({ ...r, scoreScale: 'rank' as const }));
    expect(() => fitCalibrator(ranks)).toThrow('These scores are normalised ranks (a rank ensemble), not probabilities or logits: calibrate a mean ensemble (melanoma ensemble --mode mean) instead');
  });

  test('a rank-ensemble file is refused for what it is, even where its calibrator exists already', async () => {
    const csv = path.join(dir, 'ranks.csv');
    fs.writeFileSync(csv, ['image_name,target,score,score_scale', ...rows.map((r) => `${r.imageName},${r.target},0.5,rank`)].join('\n') + '\n');
    fs.writeFileSync(path.join(dir, 'calibrator.json'), 'mine');
    await expect(calibratePredictionsFile(csv)).rejects.toThrow('These scores are normalised ranks (a rank ensemble), not probabilities or logits');
    expect(fs.readFileSync(path.join(dir, 'calibrator.json'), 'utf8')).toBe('mine');
    fs.rmSync(path.join(dir, 'calibrator.json'));
  });

  test('ugly-duckling distances given to a calibrator that does not use them are refused, not ignored', () => {
    const distances = new Map(rows.map((r) => [r.imageName, 0.5]));
    for (const kind of ['platt', 'patient-context'] as const)
      expect(() => fitCalibrator(rows, { kind, uglyDuckling: distances })).toThrow(
        `The ${kind} calibrator does not use ugly-duckling distances (--ugly-duckling): pass --kind patient-embedding to fit on them, or leave them out`,
      );
  });

  test('refuses a set with too few of a class', () => {
    const few = rows.slice(0, 60).map((r, i) => ({ ...r, target: (i === 0 ? 1 : 0) as 0 | 1 }));
    expect(() => fitCalibrator(few, { source: 'few.csv' })).toThrow('few.csv: a calibrator needs at least 2 melanomas and 2 benign images but it has 1 and 59');
  });

  test('rows made in code: a target other than 0/1 or a score that is not a finite number is named, not fitted', () => {
    const withRow = (i: number, change: object) => rows.map((r, j) => (j === i ? { ...r, ...change } : r)) as unknown as PredictionRow[];
    const name = rows[3].imageName;
    expect(() => fitCalibrator(withRow(3, { target: null }), { source: 'mine' })).toThrow(`mine: row 4 (${name}) has target null: every row needs target 1 (melanoma) or 0 (benign)`);
    expect(() => fitCalibrator(withRow(3, { target: -1 }))).toThrow(`<predictions>: row 4 (${name}) has target -1: every row needs target 1 (melanoma) or 0 (benign)`);
    expect(() => fitCalibrator(withRow(3, { score: undefined }))).toThrow(
      `<predictions>: row 4 (${name}) has score undefined: every row needs a finite score, a probability or a logit (from Trainer.predict: { score: p.logit })`,
    );
    expect(() => fitCalibrator(withRow(3, { score: NaN }))).toThrow(/row 4 .* has score NaN/);
    expect(() => fitCalibrator('rows.csv' as unknown as PredictionRow[])).toThrow(new TypeError('Expected an array of prediction rows ({ imageName, target, score }) for rows but received string'));
    const { calibrator } = fitCalibrator(rows);
    expect(() => applyCalibrator(calibrator, [{ logit: 0.5 }, { logit: NaN }], 'my scores')).toThrow(
      "image 2 of my scores has logit NaN: the calibrator needs each image's finite logit (Trainer.predict gives it as logit)",
    );
  });
});

describe('patient context', () => {
  test('features: the mean and max logit of the patient\'s other images, whether there are any, and how many', () => {
    const features = calibratorFeatures('patient-context', [
      { logit: 1, patientId: 'A' },
      { logit: 2, patientId: 'B' },
      { logit: 3, patientId: 'A' },
      { logit: 5, patientId: 'A' },
    ]);
    expect(features).toEqual([
      [1, 4, 5, 1, Math.log1p(2)],
      [2, 0, 0, 0, 0],
      [3, 3, 5, 1, Math.log1p(2)],
      [5, 2, 3, 1, Math.log1p(2)],
    ]);
    expect(() => calibratorFeatures('patient-context', [{ logit: 1, patientId: 'A' }, { logit: 1, patientId: '' }], 'test.csv')).toThrow(
      "The patient-context calibrator needs every image's patient_id, but image 2 of test.csv has none: pass data with patient ids (a test.csv or TFRecords), or use a platt calibrator",
    );
    // With the image's name when the caller knows it.
    expect(() => calibratorFeatures('patient-context', [{ logit: 1, patientId: 'A' }, { logit: 1, patientId: '', imageName: 'ISIC_0000002' }], 'test.csv')).toThrow(
      "but image 2 (ISIC_0000002) of test.csv has none",
    );
  });

  test('a per-patient offset hides melanomas; the patient context finds them again (cross-fitted, paired DeLong)', () => {
    const rows = nuisanceOffsetRows(1.5);
    const { calibrator } = fitCalibrator(rows, { kind: 'patient-context' });
    const r = calibrator.report;
    expect(r.crossFitted.auc - r.raw.auc).toBeGreaterThan(0.05);
    expect(r.aucChange.pValue).toBeLessThan(0.001);
    expect(r.aucChange.ci[0]).toBeGreaterThan(0);
    // It learned "relative to the patient's other lesions": the others' mean counts against.
    expect(calibrator.weights[1]).toBeLessThan(0);
    expect(r.imagesWithOtherLesions).toBeGreaterThan(rows.length / 2);
    expect(r.warnings).toEqual([]);
    // Platt alone cannot do that: it keeps the ranking.
    expect(fitCalibrator(rows).calibrator.report.crossFitted.auc).toBeLessThan(r.raw.auc + 0.01);
  });

  test('without the nuisance there is little to gain, and it does not invent any', () => {
    const { calibrator } = fitCalibrator(nuisanceOffsetRows(0), { kind: 'patient-context' });
    expect(Math.abs(calibrator.report.crossFitted.auc - calibrator.report.raw.auc)).toBeLessThan(0.02);
  });

  test('patient-embedding: an informative ugly-duckling distance adds to the patient context', () => {
    const rows = nuisanceOffsetRows(0, 21);
    const sizes = new Map<string, number>();
    for (const r of rows) sizes.set(r.patientId!, (sizes.get(r.patientId!) ?? 0) + 1);
    const r = lcg(5);
    // Melanomas lie further from their patient's other lesions; a lone lesion has no distance.
    const ugly = new Map(rows.map((row) => [row.imageName, sizes.get(row.patientId!)! > 1 ? (row.target ? 0.5 : 0.2) + 0.25 * r() : null]));
    const context = fitCalibrator(rows, { kind: 'patient-context' }).calibrator;
    const embedding = fitCalibrator(rows, { kind: 'patient-embedding', uglyDuckling: ugly }).calibrator;
    expect(embedding.features.at(-1)).toBe('ugly_duckling');
    expect(embedding.weights.at(-1)).toBeGreaterThan(0);
    expect(embedding.report.crossFitted.auc - context.report.crossFitted.auc).toBeGreaterThan(0.03);
    expect(() => fitCalibrator(rows, { kind: 'patient-embedding' })).toThrow("the patient-embedding calibrator needs each image's ugly-duckling distance");
    const withGap = new Map(ugly);
    withGap.set(rows.find((row) => sizes.get(row.patientId!)! > 1)!.imageName, null);
    expect(() => fitCalibrator(rows, { kind: 'patient-embedding', uglyDuckling: withGap })).toThrow(/needs the ugly-duckling distance of every image with other lesions, but image \d+ \(\S+\) of .* has none/);
  });

  test('one image per patient: a warning that there is no context to use', () => {
    const rows = parsePredictionsCsv(syntheticPredictionsCsv()).map((r) => ({ ...r, patientId: r.imageName }));
    expect(fitCalibrator(rows, { kind: 'patient-context' }).calibrator.report.warnings).toEqual([
      'Every patient has a single image here, so the patient-context features are constant: this model is a Platt map and learns nothing about patients',
    ]);
  });
});

describe('the calibrator file and the calibrate command', () => {
  const oof = path.join(dir, 'oof_predictions.csv');
  fs.writeFileSync(oof, syntheticPredictionsCsv({ patients: 400 }));
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'calibrate', ...args], { encoding: 'utf8' });

  test('writes beside the predictions by default, refuses to overwrite, and the file reads back', async () => {
    const first = run(dir, '--cross-fitted-out', path.join(dir, 'cross-fitted.csv'));
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    expect(first.stdout).toMatch(/^platt: \d+ images, \d+ melanoma, 400 patients \(\d+ images with other lesions of the same patient\); cross-fitted over 5 folds \(the file's fold column\)\n/);
    expect(first.stdout).toMatch(/\nraw +0\.\d{4} +\d\.\d{4} +0\.\d{4} +0\.\d{4} +0\.\d{4}\ncalibrated +0\.\d{4} /);
    expect(first.stdout).toContain(`wrote ${path.join(dir, 'calibrator.json')}\nwrote ${path.join(dir, 'cross-fitted.csv')}\n`);
    const calibrator = await readCalibrator(path.join(dir, 'calibrator.json'));
    const expected = fitCalibrator(readPredictionsCsv(oof), { source: oof });
    expect(calibrator).toEqual(JSON.parse(JSON.stringify(expected.calibrator)));
    // The cross-fitted scores are a predictions file that evaluate and compare read.
    const crossFitted = readPredictionsCsv(path.join(dir, 'cross-fitted.csv'));
    expect(crossFitted.map((r) => r.score)).toEqual(Array.from(expected.crossFitted));
    expect(crossFitted[0].patientId).toBeDefined();

    const before = fs.readFileSync(path.join(dir, 'calibrator.json'));
    const again = run(oof);
    expect(again.status).toBe(2);
    expect(again.stderr).toContain(`error: ${path.join(dir, 'calibrator.json')} already exists and was left untouched: choose another path (--out / --cross-fitted-out) or move that file away`);
    expect(fs.readFileSync(path.join(dir, 'calibrator.json'))).toEqual(before);
  });

  test('--kind patient-context names its file after itself', () => {
    const out = run(oof, '--kind', 'patient-context');
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/^patient-context: /);
    expect(out.stdout).toContain('others_mean_logit');
    expect(fs.existsSync(path.join(dir, 'patient-context.json'))).toBe(true);
  });

  test('bad input: a missing folder, a bad option, and calibrator files that are not', async () => {
    const missing = run(path.join(dir, 'nope'));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('nope does not exist: pass a predictions CSV, a cv folder (its oof_predictions.csv) or a run folder (its valid_predictions.csv)');
    const l2 = run(oof, '--l2', '-3', '--out', path.join(dir, 'never.json'));
    expect(l2.status).toBe(2);
    expect(l2.stderr).toContain('Expected a finite number >= 0 for --l2 but received "-3".');
    expect(fs.existsSync(path.join(dir, 'never.json'))).toBe(false);

    const same = run(oof, '--out', path.join(dir, 'same.csv'), '--cross-fitted-out', path.join(dir, 'same.csv'));
    expect(same.status).toBe(2);
    expect(same.stderr).toBe(`error: --out and --cross-fitted-out are both ${path.join(dir, 'same.csv')}: give each output a file of its own\n`);
    expect(fs.existsSync(path.join(dir, 'same.csv'))).toBe(false);
    // A --cross-fitted-out where nothing can be written is refused before --out is written.
    if (fs.existsSync('/proc/self')) {
      const nowhere = run(oof, '--out', path.join(dir, 'first.json'), '--cross-fitted-out', '/proc/melanoma-nowhere/cf.csv');
      expect(nowhere.status).toBe(2);
      expect(nowhere.stderr).toBe('error: cannot create the folder /proc/melanoma-nowhere: this file system does not allow new folders there; choose a writable location\n');
      expect(fs.existsSync(path.join(dir, 'first.json'))).toBe(false);
    }
    await expect(readCalibrator(path.join(dir, 'absent.json'))).rejects.toThrow(/absent\.json does not exist: make one with `melanoma calibrate OOF_PREDICTIONS --out .*absent\.json`/);
    const write = (name: string, text: string) => {
      fs.writeFileSync(path.join(dir, name), text);
      return path.join(dir, name);
    };
    await expect(readCalibrator(write('broken.json', '{"format":'))).rejects.toThrow(/broken\.json is not valid JSON/);
    await expect(readCalibrator(write('other.json', '{"format":"something"}'))).rejects.toThrow('has no "format": "melanoma-calibrator": it should be a file written by `melanoma calibrate`');
    const good = JSON.parse(fs.readFileSync(path.join(dir, 'calibrator.json'), 'utf8'));
    await expect(readCalibrator(write('short.json', JSON.stringify({ ...good, weights: [] })))).rejects.toThrow('needs 1 finite weights');
    await expect(readCalibrator(write('kind.json', JSON.stringify({ ...good, kind: 'isotonic' })))).rejects.toThrow('has kind "isotonic", expected platt or patient-context');
  });
});
