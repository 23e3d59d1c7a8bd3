/**
 * `ensemble a.csv b.csv ...`: the out-of-fold predictions of an ensemble of models, from each
 * model's own out-of-fold predictions, combined as `predict` combines checkpoints (mean
 * probability or mean normalised rank). Is B0 + B3 better than B3 alone? The answer is then
 * `compare ensemble.csv b3.csv`, on the same images, before anything is trained again.
 */
import { Command, Option } from 'commander';
import { refuse } from './usage';
import { resolvePredictionsFile } from './calibrate';
import { joinPredictionFiles } from './compare';
import { csvField, refuseExistingFile, writeNewFile } from '../files';
import { rocAuc } from '../metrics/auc';
import { delongTest } from '../metrics/delong';
import { EnsembleMode, normalisedRanks } from '../predict';
import { PredictionsFileError } from '../report/predictions-csv';

export interface EnsembleResult {
  files: string[];
  mode: EnsembleMode;
  images: number;
  /** AUC of each input, in order, and of the ensemble. */
  aucs: number[];
  auc: number;
  /** Paired DeLong test of the ensemble against the best single input. */
  againstBest: { file: string; difference: number; ci: [number, number]; pValue: number };
  csv: string;
}

/** Combines the inputs (cv folders, run folders or predictions CSVs) image by image. */
export function ensemblePredictionFiles(inputs: readonly string[], mode: EnsembleMode = 'mean'): EnsembleResult {
  if (inputs.length < 2) throw new PredictionsFileError(`An ensemble needs at least 2 prediction files but received ${inputs.length}`);
  if (mode !== 'mean' && mode !== 'rank') throw new RangeError(`Expected 'mean' or 'rank' for the ensemble mode but received '${String(mode)}'`);
  const files = inputs.map(resolvePredictionsFile);
  const { rows, scores } = joinPredictionFiles(files);
  if (mode === 'mean') {
    const outside = files.find((_, k) => scores[k].some((v) => v < 0 || v > 1));
    if (outside) throw new PredictionsFileError(`${outside} has scores outside [0, 1]: a mean ensemble averages probabilities; use --mode rank for logits or mixed scales`);
  }
  const parts = mode === 'rank' ? scores.map(normalisedRanks) : scores;
  const combined = rows.map((_, i) => parts.reduce((sum, s) => sum + s[i], 0) / parts.length);
  const labels = rows.map((r) => r.target);
  const aucs = scores.map((s) => rocAuc(labels, s));
  const best = aucs.indexOf(Math.max(...aucs));
  const test = delongTest(labels, combined, scores[best]);
  const withPatients = rows.every((r) => r.patientId !== undefined);
  const withFolds = rows.every((r) => r.fold !== undefined);
  // Ranks say so in a column, so that calibrate refuses to read them as probabilities.
  const rank = mode === 'rank';
  const header = ['image_name', ...(withPatients ? ['patient_id'] : []), 'target', 'score', ...(withFolds ? ['fold'] : []), ...(rank ? ['score_scale'] : [])];
  const lines = rows.map((r, i) =>
    [r.imageName, ...(withPatients ? [r.patientId as string] : []), String(r.target), String(combined[i]), ...(withFolds ? [r.fold as string] : []), ...(rank ? ['rank'] : [])]
      .map(csvField)
      .join(','),
  );
  return {
    files,
    mode,
    images: rows.length,
    aucs,
    auc: rocAuc(labels, combined),
    againstBest: { file: files[best], difference: test.difference, ci: test.ci, pValue: test.pValue },
    csv: [header.join(','), ...lines].join('\n') + '\n',
  };
}

export function registerEnsembleCommand(program: Command): void {
  program
    .command('ensemble')
    .description("out-of-fold predictions of an ensemble, from each model's out-of-fold predictions (cv folders, run folders or CSVs), with its AUC against the best single model")
    .argument('<predictions...>', 'two or more: cv folders (their oof_predictions.csv), run folders (valid_predictions.csv) or predictions CSVs of the same images')
    .requiredOption('--out <file>', 'the ensemble\'s predictions CSV (never overwritten): evaluate, compare or calibrate it')
    .addOption(new Option('--mode <mode>', 'mean probability, or mean normalised rank (as predict --ensemble)').choices(['mean', 'rank']).default('mean'))
    .action(async (inputs: string[], opts: { out: string; mode: EnsembleMode }, command: Command) => {
      const instead = 'choose another --out or move that file away';
      refuseExistingFile(opts.out, instead);
      let result: EnsembleResult;
      try {
        result = ensemblePredictionFiles(inputs, opts.mode);
      } catch (e) {
        if (e instanceof PredictionsFileError || e instanceof RangeError) refuse(command, `${e.message}`);
        throw e;
      }
      await writeNewFile(opts.out, Buffer.from(result.csv), instead);
      const f = (v: number) => v.toFixed(4);
      const b = result.againstBest;
      process.stdout.write(
        [
          `${result.images} images, ${result.mode} of ${result.files.length} models`,
          ...result.files.map((file, k) => `  ${file}: AUC ${f(result.aucs[k])}`),
          `ensemble: AUC ${f(result.auc)}; against the best single model: ${b.difference >= 0 ? '+' : ''}${f(b.difference)} (95% CI ${f(b.ci[0])} to ${f(b.ci[1])}, paired DeLong p = ${b.pValue.toFixed(3)})`,
          `wrote ${opts.out}`,
        ].join('\n') + '\n',
      );
    });
}
