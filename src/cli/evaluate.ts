/**
 * `evaluate <predictions.csv>`: compute the evaluation of any model's predictions (this project's
 * or a Python model's) and write evaluation.json and report.html.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { refuse } from './usage';
import { OutputExistsError, writeFileAtomic, writeNewFiles } from '../files';
import { evaluatePredictions, Evaluation, EvaluationOptions, operatingPointRows } from '../report/evaluation';
import { renderHtmlReport, thresholdText } from '../report/html';
import { PredictionsFileError, readPredictionsCsv } from '../report/predictions-csv';
import { resolvePredictionsFile } from './calibrate';

export interface EvaluateFileOptions extends Omit<EvaluationOptions, 'source'> {
  /** Directory for evaluation.json and report.html; nothing is written without it. */
  out?: string;
  /** Replace existing evaluation.json/report.html in `out`. */
  force?: boolean;
}

export interface EvaluateFileResult {
  evaluation: Evaluation;
  /** Paths written (empty without `out`). */
  written: string[];
}

export const OUTPUT_FILES = ['evaluation.json', 'report.html'] as const;

/**
 * Read a predictions CSV, evaluate it, and (with `out`) write evaluation.json and report.html,
 * each atomically (a crash leaves the earlier file or the new one, never half of one).
 */
export async function evaluatePredictionsFile(file: string, options: EvaluateFileOptions = {}): Promise<EvaluateFileResult> {
  const { out, force, ...evaluationOptions } = options;
  const targets = out ? OUTPUT_FILES.map((f) => path.join(out, f)) : [];
  // Check before the (possibly long) evaluation so a refusal costs nothing.
  if (!force) {
    const existing = targets.filter((t) => fs.existsSync(t));
    if (existing.length) {
      throw new OutputExistsError(`Refusing to overwrite ${existing.join(' and ')}: expected a directory without earlier results; pass --force (force: true) to replace them`);
    }
  }
  const predictions = resolvePredictionsFile(file); // a cv or run folder: its predictions file
  const rows = readPredictionsCsv(predictions);
  const evaluation = evaluatePredictions(rows, { ...evaluationOptions, source: path.basename(predictions) });
  if (!out) return { evaluation, written: [] };
  const contents = [JSON.stringify(evaluation, null, 2) + '\n', renderHtmlReport(evaluation)];
  const files = targets.map((file, i) => ({ file, data: Buffer.from(contents[i]) }));
  if (force) for (const { file, data } of files) await writeFileAtomic(file, data, { overwrite: true });
  // Without --force, a file that appeared meanwhile is refused too, never clobbered.
  else await writeNewFiles(files, 'pass --force (force: true) to replace it');
  return { evaluation, written: targets };
}

function numberIn(name: string, ok: (v: number) => boolean, expectation: string): (value: string) => number {
  return (value) => {
    const v = Number(value);
    if (value.trim() === '' || !ok(v)) throw new InvalidArgumentError(`Expected ${expectation} for ${name} but received "${value}".`);
    return v;
  };
}

function numberList(name: string, ok: (v: number) => boolean, expectation: string): (value: string) => number[] {
  return (value) => {
    const items = value.split(',').map((v) => v.trim());
    if (items.some((v) => v === '' || !ok(Number(v)))) throw new InvalidArgumentError(`Expected comma-separated ${expectation} for ${name} but received "${value}".`);
    return items.map(Number);
  };
}

function summaryLines(e: Evaluation, written: string[]): string[] {
  const f = (v: number | null | undefined, d = 3): string => (v === null || v === undefined ? '—' : v.toFixed(d));
  const p = (v: number | null): string => (v === null ? '—' : `${(100 * v).toFixed(1)}%`);
  const ts = e.operatingPoints.atTargetSensitivity;
  const lines = [
    `${e.counts.units} ${e.unit}s, ${e.counts.positives} melanoma (${(100 * e.counts.prevalence).toFixed(2)}%)`,
    `ROC AUC ${f(e.auc.value)}  95% CI ${e.auc.delong ? `${f(e.auc.delong.ci[0])}-${f(e.auc.delong.ci[1])} (DeLong)` : '—'}${e.auc.bootstrap ? `, ${f(e.auc.bootstrap.ci[0])}-${f(e.auc.bootstrap.ci[1])} (bootstrap over ${e.auc.bootstrap.unit}s)` : ''}`,
    `Partial AUC (TPR >= ${e.partialAuc.minTpr}) ${f(e.partialAuc.value)} of ${f(e.partialAuc.max, 1)}`,
    `At sensitivity >= ${p(ts.targetSensitivity)}: specificity ${p(ts.specificity)} (threshold ${thresholdText(ts.threshold)}, TP ${ts.tp} FP ${ts.fp} TN ${ts.tn} FN ${ts.fn})`,
  ];
  for (const r of operatingPointRows(e).slice(1)) {
    const o = r.point;
    lines.push(`  ${r.name}: sensitivity ${p(o.sensitivity)}, specificity ${p(o.specificity)} (threshold ${thresholdText(o.threshold)}, TP ${o.tp} FP ${o.fp} TN ${o.tn} FN ${o.fn})`);
  }
  if (e.calibration) lines.push(`ECE ${f(e.calibration.ece)}  Brier ${f(e.calibration.brier, 4)}${e.calibration.temperatureScaling ? `  (T = ${f(e.calibration.temperatureScaling.temperature, 2)} gives ECE ${f(e.calibration.temperatureScaling.eceAfter)})` : ''}`);
  if (e.crossValidation) lines.push(`CV: fold AUC ${f(e.crossValidation.meanAuc)} +- ${f(e.crossValidation.sdAuc)} over ${e.crossValidation.folds.length} folds; pooled ${f(e.crossValidation.pooledAuc)}`);
  for (const w of e.warnings) lines.push(`warning: ${w}`);
  for (const w of written) lines.push(`wrote ${w}`);
  return lines;
}

/** Add the `evaluate` command to a commander program. */
export function registerEvaluateCommand(program: Command): void {
  program
    .command('evaluate')
    .description('Evaluate a predictions CSV (image_name, target, score[, patient_id][, fold]): AUC with CIs, partial AUC, operating points, calibration, CV summary; writes evaluation.json and report.html')
    .argument('<predictions>', 'a predictions CSV, a cv folder (its oof_predictions.csv) or a run folder (its valid_predictions.csv)')
    .option('-o, --out <dir>', 'directory for evaluation.json and report.html (without it, only a summary is printed)')
    .option('--force', 'overwrite evaluation.json/report.html in --out', false)
    .option('--threshold <x>', 'threshold for the fixed operating point (default 0.5 for probabilities, 0 for logits)', numberIn('--threshold', Number.isFinite, 'a finite number'))
    .option('--target-sensitivity <x>', 'sensitivity the clinical operating point must reach', numberIn('--target-sensitivity', (v) => v > 0 && v <= 1, 'a number in (0, 1]'), 0.95)
    .option('--sensitivities <list>', 'operating-point table: the most specific threshold reaching each sensitivity, comma-separated', numberList('--sensitivities', (v) => v > 0 && v <= 1, 'numbers in (0, 1]'), [0.8, 0.9, 0.95])
    .option('--thresholds <list>', 'operating-point table: fixed thresholds on the score scale, comma-separated', numberList('--thresholds', Number.isFinite, 'finite numbers'), [])
    .addOption(new Option('--patient-aggregation <mode>', 'evaluate per image (none) or per patient (max|mean of its scores)').choices(['none', 'max', 'mean']).default('none'))
    .option('--bootstrap <n>', 'bootstrap replicates for CIs (0 = off)', numberIn('--bootstrap', (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer'), 1000)
    .option('--seed <n>', 'bootstrap seed', numberIn('--seed', (v) => Number.isInteger(v) && v >= 0 && v <= 0xffffffff, 'an integer in [0, 4294967295]'), 0)
    .option('--min-tpr <x>', 'TPR floor of the partial AUC (ISIC 2024: 0.8)', numberIn('--min-tpr', (v) => v >= 0 && v < 1, 'a number in [0, 1)'), 0.8)
    .addOption(new Option('--score-scale <scale>', 'read scores as probabilities or logits (auto: probabilities when all lie in [0, 1])').choices(['auto', 'probability', 'logit']).default('auto'))
    .action(async (file: string, opts: Record<string, unknown>, command: Command) => {
      try {
        const { written, evaluation } = await evaluatePredictionsFile(file, {
          out: opts.out as string | undefined,
          force: opts.force as boolean,
          threshold: opts.threshold as number | undefined,
          targetSensitivity: opts.targetSensitivity as number,
          sensitivities: opts.sensitivities as number[],
          thresholds: opts.thresholds as number[],
          patientAggregation: opts.patientAggregation as EvaluationOptions['patientAggregation'],
          bootstrap: opts.bootstrap as number,
          seed: opts.seed as number,
          minTpr: opts.minTpr as number,
          scoreScale: opts.scoreScale as EvaluationOptions['scoreScale'],
        });
        process.stdout.write(summaryLines(evaluation, written).join('\n') + '\n');
      } catch (e) {
        // Problems with the input or options get a one-line message; anything else is a bug: keep the stack.
        const expected = e instanceof PredictionsFileError || e instanceof OutputExistsError || e instanceof RangeError;
        if (expected) refuse(command, `${(e as Error).message}`);
        throw e;
      }
    });
}
