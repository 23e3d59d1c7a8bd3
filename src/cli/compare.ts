/**
 * `compare <a.csv> <b.csv>`: is model A's AUC different from model B's on the same images? The
 * paired DeLong test (src/metrics/delong.ts), which accounts for both models having scored the
 * same lesions: far more sensitive than comparing two separate confidence intervals.
 */
import { Command, InvalidArgumentError } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../files';
import { DelongTestResult, delongTest } from '../metrics/delong';
import { PredictionRow, PredictionsFileError, readPredictionsCsv } from '../report/predictions-csv';

export interface PredictionsComparison extends DelongTestResult {
  fileA: string;
  fileB: string;
  images: number;
}

/**
 * Joins the two files on image_name (they must hold the same images with the same targets) and
 * runs the paired test. Scores are compared by rank, so probabilities and logits may be mixed.
 */
export function comparePredictionFiles(fileA: string, fileB: string, { level = 0.95 } = {}): PredictionsComparison {
  const a = readPredictionsCsv(fileA);
  const b = new Map<string, PredictionRow>(readPredictionsCsv(fileB).map((row) => [row.imageName, row]));
  const onlyInA = a.filter((row) => !b.has(row.imageName));
  if (onlyInA.length > 0 || a.length !== b.size) {
    const inA = new Set(a.map((row) => row.imageName));
    const onlyInB = [...b.keys()].filter((name) => !inA.has(name));
    const example = onlyInA[0]?.imageName ?? onlyInB[0];
    throw new PredictionsFileError(
      `${fileA} and ${fileB} must score the same images: ${onlyInA.length} are only in the first and ${onlyInB.length} only in the second (e.g. ${example})`,
    );
  }
  const mismatch = a.find((row) => b.get(row.imageName)!.target !== row.target);
  if (mismatch)
    throw new PredictionsFileError(`${mismatch.imageName} has target ${mismatch.target} in ${fileA} but ${b.get(mismatch.imageName)!.target} in ${fileB}: compare predictions of the same labelled set`);
  const test = delongTest(
    a.map((row) => row.target),
    a.map((row) => row.score),
    a.map((row) => b.get(row.imageName)!.score),
    level,
  );
  return { ...test, fileA, fileB, images: a.length };
}

export function formatComparison(c: PredictionsComparison): string[] {
  const f = (v: number, d = 4) => v.toFixed(d);
  const pct = Math.round(100 * c.level);
  return [
    `${c.images} images (${c.nPos} melanoma, ${c.nNeg} benign), paired DeLong test`,
    `A ${path.basename(c.fileA)}: AUC ${f(c.aucA)}`,
    `B ${path.basename(c.fileB)}: AUC ${f(c.aucB)}`,
    `A - B = ${f(c.difference)}  ${pct}% CI ${f(c.ci[0])} to ${f(c.ci[1])}  (se ${f(c.se)}, correlation ${c.correlation === null ? '—' : f(c.correlation, 3)})`,
    `z = ${Number.isFinite(c.z) ? c.z.toFixed(3) : String(c.z)}, two-sided p = ${c.pValue < 1e-4 ? c.pValue.toExponential(2) : f(c.pValue)}`,
  ];
}

/** Add the `compare` command to a commander program. */
export function registerCompareCommand(program: Command): void {
  program
    .command('compare')
    .description('paired DeLong test of two models scored on the same images: is AUC A different from AUC B?')
    .argument('<a.csv>', 'predictions of model A (image_name, target, score[, patient_id][, fold])')
    .argument('<b.csv>', 'predictions of model B on the same images')
    .option('--level <x>', 'confidence level of the CI of A - B', (value: string) => {
      const v = Number(value);
      if (!(v > 0 && v < 1)) throw new InvalidArgumentError(`Expected a number in (0, 1) for --level but received "${value}".`);
      return v;
    }, 0.95)
    .option('--json <file>', 'also write the result as JSON (refuses to overwrite)')
    .action(async (fileA: string, fileB: string, opts: { level: number; json?: string }, command: Command) => {
      // Before any work: a results file that exists is never replaced.
      if (opts.json && fs.existsSync(opts.json)) command.error(`error: ${opts.json} already exists and was left untouched: choose another --json path or move that file away`);
      let result: PredictionsComparison;
      try {
        result = comparePredictionFiles(fileA, fileB, { level: opts.level });
      } catch (e) {
        if (e instanceof PredictionsFileError || e instanceof RangeError) command.error(`error: ${e.message}`);
        throw e;
      }
      process.stdout.write(formatComparison(result).join('\n') + '\n');
      if (opts.json) {
        try {
          await writeFileAtomic(opts.json, Buffer.from(JSON.stringify(result, null, 2) + '\n'));
        } catch (e) {
          // Created by someone else since the check above.
          if ((e as NodeJS.ErrnoException).code === 'EEXIST') command.error(`error: ${opts.json} appeared meanwhile and was left untouched: choose another --json path`);
          throw e;
        }
        process.stdout.write(`wrote ${opts.json}\n`);
      }
    });
}
