/**
 * `calibrate <predictions>`: fit a second-stage calibrator (src/calibrate.ts) on out-of-fold
 * predictions, print what it does (cross-fitted) and write the file `predict --calibrator` reads.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { refuse } from './usage';
import * as fs from 'fs';
import * as path from 'path';
import { CALIBRATOR_KINDS, CalibrationReport, Calibrator, CalibratorError, CalibratorKind, fitCalibrator, rowsAsLogits } from '../calibrate';
import { readUglyDuckling } from '../embed';
import { checkOutputLocations, csvField, refuseExistingFile, writeNewFiles } from '../files';
import { PredictionsFileError, readPredictionsCsv } from '../report/predictions-csv';
import { CV_FILES } from '../train/cv';

/** A cv folder's pooled out-of-fold file, a run folder's validation file, or the CSV itself. */
export function resolvePredictionsFile(input: string): string {
  const st = fs.statSync(input, { throwIfNoEntry: false });
  if (!st) throw new PredictionsFileError(`${input} does not exist: pass a predictions CSV, a cv folder (its ${CV_FILES.oof}) or a run folder (its valid_predictions.csv)`);
  if (!st.isDirectory()) return input;
  for (const name of [CV_FILES.oof, 'valid_predictions.csv']) {
    const file = path.join(input, name);
    if (fs.existsSync(file)) return file;
  }
  throw new PredictionsFileError(`${input} holds neither ${CV_FILES.oof} nor valid_predictions.csv: pass a cv folder, a run folder or a predictions CSV`);
}

export interface CalibrateFileOptions {
  kind?: CalibratorKind;
  l2?: number;
  /** Default: calibrator.json (platt) or patient-context.json beside the predictions. */
  out?: string;
  /** Also write the cross-fitted scores as a predictions CSV (for `evaluate` and `compare`). */
  crossFittedOut?: string;
  /** patient-embedding: the images.csv of `melanoma embed` on the same cv folder. */
  uglyDucklingCsv?: string;
}

export interface CalibrateFileResult {
  calibrator: Calibrator;
  written: string[];
}

const CHOOSE_ANOTHER = 'choose another path (--out / --cross-fitted-out) or move that file away';

export async function calibratePredictionsFile(input: string, options: CalibrateFileOptions = {}): Promise<CalibrateFileResult> {
  const file = resolvePredictionsFile(input);
  const kind = options.kind ?? 'platt';
  const out = options.out ?? path.join(path.dirname(file), kind === 'platt' ? 'calibrator.json' : `${kind}.json`);
  const outputs = [{ file: out, option: '--out' }, ...(options.crossFittedOut ? [{ file: options.crossFittedOut, option: '--cross-fitted-out' }] : [])];
  // The input first (a bad file is the first thing to hear of), then the outputs, before the fit:
  // a file that exists is never replaced, and each has a writable folder.
  const rows = readPredictionsCsv(file);
  rowsAsLogits(rows);
  await checkOutputLocations(outputs);
  for (const o of outputs) refuseExistingFile(o.file, CHOOSE_ANOTHER);
  const uglyDuckling = options.uglyDucklingCsv ? await readUglyDuckling(options.uglyDucklingCsv) : undefined;
  if (uglyDuckling) {
    const missing = rows.filter((r) => !uglyDuckling.has(r.imageName));
    if (missing.length)
      throw new CalibratorError(`${options.uglyDucklingCsv} lacks ${missing.length} of the ${rows.length} images of ${file} (e.g. ${missing[0].imageName}): embed the same cv folder's data`);
  }
  const { calibrator, crossFitted } = fitCalibrator(rows, { kind, l2: options.l2, source: file, uglyDuckling });
  const files = [{ file: out, data: Buffer.from(JSON.stringify(calibrator, null, 2) + '\n') }];
  if (options.crossFittedOut) {
    const withPatients = rows.every((r) => r.patientId);
    const lines = [withPatients ? 'image_name,patient_id,target,score' : 'image_name,target,score'];
    rows.forEach((r, i) => lines.push([r.imageName, ...(withPatients ? [r.patientId as string] : []), String(r.target), String(crossFitted[i])].map(csvField).join(',')));
    files.push({ file: options.crossFittedOut, data: Buffer.from(lines.join('\n') + '\n') });
  }
  return { calibrator, written: await writeNewFiles(files, CHOOSE_ANOTHER) };
}

export function formatCalibration(c: Calibrator): string[] {
  const r: CalibrationReport = c.report;
  const f = (v: number, d = 4) => v.toFixed(d);
  const row = (name: string, q: CalibrationReport['raw']) =>
    `${name.padEnd(12)}${f(q.auc).padStart(8)}${f(q.nll).padStart(8)}${f(q.brier).padStart(8)}${f(q.ece).padStart(8)}${f(q.meanPredicted).padStart(10)}`;
  const split = r.crossFitBy === 'fold' ? "the file's fold column" : r.crossFitBy === 'patient' ? 'patient-level folds' : 'image-level folds (no patient_id column)';
  return [
    `${c.kind}: ${r.images} images, ${r.melanomas} melanoma${r.patients === null ? '' : `, ${r.patients} patients (${r.imagesWithOtherLesions} images with other lesions of the same patient)`}; cross-fitted over ${r.crossFitFolds} folds (${split})`,
    `${''.padEnd(12)}${'AUC'.padStart(8)}${'NLL'.padStart(8)}${'Brier'.padStart(8)}${'ECE'.padStart(8)}${'mean p'.padStart(10)}   (observed rate ${f(r.observedRate)})`,
    row('raw', r.raw),
    row('calibrated', r.crossFitted),
    `AUC calibrated - raw: ${r.aucChange.difference >= 0 ? '+' : ''}${f(r.aucChange.difference)} (${Math.round(100 * r.aucChange.level)}% CI ${f(r.aucChange.ci[0])} to ${f(r.aucChange.ci[1])}, paired DeLong p = ${f(r.aucChange.pValue, 3)})`,
    ...(c.kind === 'platt'
      ? [`(the slope, ${c.weights[0].toFixed(3)}, is positive: the map keeps every ranking, so it leaves a test set's AUC as it is; the cross-fitted AUC moves only because each fold had its own fit)`]
      : []),
    `model: sigmoid(${c.features.map((name, j) => `${f(c.weights[j], 3)} * ${name}`).join(' + ')} + ${f(c.intercept, 3)})`,
    ...c.operatingPoints.map((p) => `sensitivity >= ${p.targetSensitivity}: threshold ${p.threshold.toPrecision(4)} gave sensitivity ${f(p.sensitivity, 3)}, specificity ${f(p.specificity, 3)} (cross-fitted)`),
    ...r.warnings.map((w) => `warning: ${w}`),
  ];
}

/** Add the `calibrate` command to a commander program. */
export function registerCalibrateCommand(program: Command): void {
  program
    .command('calibrate')
    .description("fit a calibrator on out-of-fold predictions (platt, or patient-context: the patient's other lesions), report it cross-fitted, and write the file predict --calibrator reads")
    .argument('<predictions>', `a cv folder (its ${CV_FILES.oof}), a run folder (its valid_predictions.csv) or a predictions CSV`)
    .addOption(new Option('--kind <kind>', "platt: a slope and an intercept on the logit; patient-context: also the logits of the patient's other images; patient-embedding: also the ugly-duckling distance of embed").choices(CALIBRATOR_KINDS).default('platt'))
    .option('--out <file>', 'calibrator file (default: calibrator.json or patient-context.json beside the predictions); never overwritten')
    .option('--cross-fitted-out <file>', 'also write the cross-fitted calibrated scores as a predictions CSV (for evaluate and compare)')
    .option('--ugly-duckling <images.csv>', "with --kind patient-embedding: the images.csv of `melanoma embed` on the same cv folder (each lesion's distance from the patient's others)")
    .option('--l2 <x>', 'ridge penalty on the standardised weights', (value: string) => {
      const v = Number(value);
      if (value.trim() === '' || !(v >= 0) || !Number.isFinite(v)) throw new InvalidArgumentError(`Expected a finite number >= 0 for --l2 but received "${value}".`);
      return v;
    }, 1)
    .action(async (input: string, opts: { kind: CalibratorKind; out?: string; crossFittedOut?: string; l2: number; uglyDuckling?: string }, command: Command) => {
      let result: CalibrateFileResult;
      try {
        result = await calibratePredictionsFile(input, { kind: opts.kind, l2: opts.l2, out: opts.out, crossFittedOut: opts.crossFittedOut, uglyDucklingCsv: opts.uglyDuckling });
      } catch (e) {
        if (e instanceof PredictionsFileError || e instanceof RangeError) refuse(command, `${e.message}`);
        throw e;
      }
      process.stdout.write([...formatCalibration(result.calibrator), ...result.written.map((w) => `wrote ${w}`)].join('\n') + '\n');
    });
}
