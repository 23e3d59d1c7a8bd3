/**
 * `compare <a.csv> <b.csv>`: is model A's AUC different from model B's on the same images? The
 * paired DeLong test (src/metrics/delong.ts), which accounts for both models having scored the
 * same lesions: far more sensitive than comparing two separate confidence intervals.
 */
import { Command, InvalidArgumentError } from 'commander';
import { refuse } from './usage';
import * as path from 'path';
import { refuseExistingFile, writeNewFile } from '../files';
import { DelongTestResult, delongTest } from '../metrics/delong';
import { PredictionRow, PredictionsFileError, readPredictionsCsv } from '../report/predictions-csv';
import { resolvePredictionsFile } from './calibrate';

export interface PredictionsComparison extends DelongTestResult {
  fileA: string;
  fileB: string;
  images: number;
}

/**
 * Rows of several predictions files joined on image_name: they must hold the same images with the
 * same targets. `rows` are the first file's (with its patient_id and fold), `scores[k][i]` is
 * file k's score of rows[i].
 */
export function joinPredictionFiles(files: readonly string[]): { rows: PredictionRow[]; scores: number[][] } {
  // One file twice would compare a model with itself, or count it twice in an ensemble.
  const twice = files.find((file, i) => files.findIndex((other) => path.resolve(other) === path.resolve(file)) !== i);
  if (twice !== undefined) throw new PredictionsFileError(`${twice} is given twice: give each model's predictions once`);
  const [first, ...others] = files;
  const rows = readPredictionsCsv(first);
  const scores = [rows.map((r) => r.score)];
  for (const file of others) {
    const byName = new Map<string, PredictionRow>(readPredictionsCsv(file).map((row) => [row.imageName, row]));
    const onlyInFirst = rows.filter((row) => !byName.has(row.imageName));
    if (onlyInFirst.length > 0 || rows.length !== byName.size) {
      const inFirst = new Set(rows.map((row) => row.imageName));
      const onlyInOther = [...byName.keys()].filter((name) => !inFirst.has(name));
      const example = onlyInFirst[0]?.imageName ?? onlyInOther[0];
      throw new PredictionsFileError(
        `${first} and ${file} must score the same images: ${onlyInFirst.length} are only in the first and ${onlyInOther.length} only in the second (e.g. ${example})`,
      );
    }
    const mismatch = rows.find((row) => byName.get(row.imageName)!.target !== row.target);
    if (mismatch)
      throw new PredictionsFileError(`${mismatch.imageName} has target ${mismatch.target} in ${first} but ${byName.get(mismatch.imageName)!.target} in ${file}: use predictions of the same labelled set`);
    scores.push(rows.map((row) => byName.get(row.imageName)!.score));
  }
  return { rows, scores };
}

/**
 * Joins the two files on image_name (they must hold the same images with the same targets) and
 * runs the paired test. Scores are compared by rank, so probabilities and logits may be mixed.
 */
export function comparePredictionFiles(a: string, b: string, { level = 0.95 } = {}): PredictionsComparison {
  // A cv or run folder stands for its predictions file, as in evaluate, calibrate and ensemble.
  const [fileA, fileB] = [resolvePredictionsFile(a), resolvePredictionsFile(b)];
  const { rows, scores } = joinPredictionFiles([fileA, fileB]);
  const test = delongTest(
    rows.map((row) => row.target),
    scores[0],
    scores[1],
    level,
  );
  return { ...test, fileA, fileB, images: rows.length };
}

export function formatComparison(c: PredictionsComparison): string[] {
  const f = (v: number, d = 4) => v.toFixed(d);
  const pct = Math.round(100 * c.level);
  // File names alone, unless they are the same (two folders' oof_predictions.csv): then the paths.
  const sameName = path.basename(c.fileA) === path.basename(c.fileB);
  const label = (file: string) => (sameName ? file : path.basename(file));
  return [
    `${c.images} images (${c.nPos} melanoma, ${c.nNeg} benign), paired DeLong test`,
    `A ${label(c.fileA)}: AUC ${f(c.aucA)}`,
    `B ${label(c.fileB)}: AUC ${f(c.aucB)}`,
    `A - B = ${f(c.difference)}  ${pct}% CI ${f(c.ci[0])} to ${f(c.ci[1])}  (se ${f(c.se)}, correlation ${c.correlation === null ? '—' : f(c.correlation, 3)})`,
    `z = ${Number.isFinite(c.z) ? c.z.toFixed(3) : String(c.z)}, two-sided p = ${c.pValue < 1e-4 ? c.pValue.toExponential(2) : f(c.pValue)}`,
  ];
}

/** Add the `compare` command to a commander program. */
export function registerCompareCommand(program: Command): void {
  program
    .command('compare')
    .description('paired DeLong test of two models scored on the same images: is AUC A different from AUC B?')
    .argument('<a.csv>', 'predictions of model A (image_name, target, score[, patient_id][, fold]), or a cv/run folder (its out-of-fold or validation predictions)')
    .argument('<b.csv>', 'predictions of model B on the same images, or a folder')
    .option('--level <x>', 'confidence level of the CI of A - B', (value: string) => {
      const v = Number(value);
      if (!(v > 0 && v < 1)) throw new InvalidArgumentError(`Expected a number in (0, 1) for --level but received "${value}".`);
      return v;
    }, 0.95)
    .option('--json <file>', 'also write the result as JSON (refuses to overwrite)')
    .action(async (fileA: string, fileB: string, opts: { level: number; json?: string }, command: Command) => {
      const instead = 'choose another --json path or move that file away';
      // Before any work: a results file that exists is never replaced.
      if (opts.json) refuseExistingFile(opts.json, instead);
      let result: PredictionsComparison;
      try {
        result = comparePredictionFiles(fileA, fileB, { level: opts.level });
      } catch (e) {
        if (e instanceof PredictionsFileError || e instanceof RangeError) refuse(command, `${e.message}`);
        throw e;
      }
      process.stdout.write(formatComparison(result).join('\n') + '\n');
      if (opts.json) {
        await writeNewFile(opts.json, Buffer.from(JSON.stringify(result, null, 2) + '\n'), instead);
        process.stdout.write(`wrote ${opts.json}\n`);
      }
    });
}
