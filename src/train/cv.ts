/**
 * Cross-validation: every fold of one patient-level split trained into its own subfolder of one
 * CV folder, then the out-of-fold predictions pooled into one file, summarised (per-fold AUC,
 * mean +- sd, pooled AUC with DeLong CI) and evaluated into a report.
 *
 * CV folder: config.json, folds.csv, fold-0/ ... fold-(k-1)/ (each a run folder, see run.ts),
 * oof_predictions.csv, cv_summary.json, evaluation.json, report.html.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { evaluatePredictionsFile } from '../cli/evaluate';
import { checkFolderWritable, makeDirectory, writeFileAtomic } from '../files';
import { readFoldsCsv, splitByFold, writeFoldsCsv } from '../folds';
import { CvSummary, crossValidationSummary } from '../metrics/cv';
import type { Evaluation } from '../report/evaluation';
import { readPredictionsCsv } from '../report/predictions-csv';
import { SafetensorsError } from './safetensors';
import { progressiveEpochs } from './schedule';
import {
  DEMO_DATA,
  PREDICTION_COLUMNS,
  RUN_FILES,
  RunHooks,
  TrainRunOptions,
  TrainRunResult,
  checkCheckpointIsTheRuns,
  checkFolds,
  cosineResumeNote,
  createRunDir,
  resumePoint,
  resumeOverrides,
  describeModel,
  markResumable,
  openRunData,
  readFolderConfig,
  readRunConfig,
  resumableFolderOf,
  trainFold,
  withLog,
  withPreset,
  writeRunFiles,
} from './run';
import { Trainer } from './trainer';

export interface CrossValidateOptions extends Omit<TrainRunOptions, 'fold'> {
  /** Continue this CV folder: finished folds are kept, an interrupted one resumes, the rest train. */
  resume?: string;
  /** Called when a fold starts (0-based). */
  onFold?: (fold: number, folds: number) => void;
}

export interface CrossValidateResult {
  cvDir: string;
  folds: TrainRunResult[];
  /** Null when stopped before every fold finished. */
  summary: CvSummary | null;
  evaluation: Evaluation | null;
  stopped: boolean;
}

export const CV_FILES = { oof: 'oof_predictions.csv', summary: 'cv_summary.json' } as const;

export const foldDirName = (fold: number) => `fold-${fold}`;

interface CvConfig {
  kind: 'cv';
  data: string;
  csv: string | null;
  folds: number;
  /** The user's options (before per-fold resolution: posWeight 'auto' is per fold). */
  trainerOptions: TrainRunOptions;
}

/**
 * Trains all folds (`folds`, default 5) and writes the pooled out-of-fold predictions, the CV
 * summary and the report. With `resume`, continues a CV folder after a crash or Ctrl-C.
 */
export async function crossValidate(options: CrossValidateOptions = {}): Promise<CrossValidateResult> {
  const { resume, onFold, signal, log = () => undefined, onBatch, onEpoch, checkpointMinutes } = options;
  const hooks: RunHooks = { signal, log, onBatch, onEpoch, checkpointMinutes };
  let cvDir: string;
  let config: CvConfig;
  if (resume) {
    config = await readFolderConfig<CvConfig>(resume, 'a folder made by `melanoma cv`');
    if (config.kind !== 'cv') throw new RangeError(`${resume} is a single-fold run folder: resume it with \`melanoma train --resume ${resume}\``);
    cvDir = resume;
    Object.assign(config.trainerOptions, resumeOverrides(options));
  } else {
    const { data = DEMO_DATA, csv, folds = 5 } = options;
    const trainerOptions = omit(options, ['data', 'csv', 'folds', 'runsDir', 'signal', 'log', 'onBatch', 'onEpoch', 'checkpointMinutes', 'resume', 'onFold']);
    checkFolds(folds);
    const given = withPreset(data === DEMO_DATA, trainerOptions);
    // Stages without epochs train their sum: stored so, as a resume reads stored options with the
    // default epochs of before (resolveOptions' stored).
    const stored = given.imageSizes && given.epochs === undefined ? { ...given, epochs: progressiveEpochs(given.imageSizes) } : given;
    config = { kind: 'cv', data, csv: csv ?? null, folds, trainerOptions: stored };
    cvDir = ''; // created once the first fold's engine is built
  }
  // Validates the options before touching data or disk.
  // A resumed folder's options keep the meaning they had when it was made (resolveOptions' stored).
  const asStored = { stored: resume !== undefined };
  const seed = new Trainer(config.trainerOptions, asStored).options.seed;
  if (!resume) await checkFolderWritable(options.runsDir ?? 'runs');
  let assignments;
  let dataset;
  let contentWarning: string | null = null;
  if (resume) {
    assignments = await readFoldsCsv(path.join(cvDir, RUN_FILES.folds));
    // The data were checked (and any warning shown) when the cross-validation began.
    ({ dataset } = await openRunData(config.data, config.csv ?? undefined, config.folds, seed, () => undefined, { checkContent: false }));
  } else {
    let dataPath: string;
    ({ dataPath, dataset, assignments, contentWarning } = await openRunData(config.data, config.csv ?? undefined, config.folds, seed, log));
    config.data = dataPath;
  }
  log(`data: ${config.data} (${dataset.format}), ${dataset.samples.length} images; ${config.folds}-fold cross-validation`);
  if (contentWarning) log(contentWarning);

  const results: TrainRunResult[] = [];
  for (let fold = 0; fold < config.folds; fold++) {
    if (signal?.aborted) break;
    const { train, valid } = splitByFold(dataset.samples, assignments, fold);
    const foldDir = cvDir ? path.join(cvDir, foldDirName(fold)) : '';
    const last = foldDir ? path.join(foldDir, RUN_FILES.last) : '';
    const resumable = foldDir !== '' && (await fsp.stat(last).catch(() => null)) !== null;
    onFold?.(fold, config.folds);
    const trainer = resumable
      ? await Trainer.load(last, resumeOverrides(config.trainerOptions)).catch((err: unknown) => {
          // A damaged fold checkpoint: that fold can start over, the others are kept.
          if (!(err instanceof SafetensorsError)) throw err;
          throw new SafetensorsError(`${err.message.replace(/\.$/, '')}. To train fold ${fold} again from its start, remove ${foldDir} and run \`melanoma cv --resume ${cvDir}\` again (the other folds are kept)`);
        })
      : new Trainer(config.trainerOptions, asStored);
    try {
      if (resumable) {
        checkCheckpointIsTheRuns(last, trainer, await readRunConfig(foldDir), train);
        log(`fold ${fold}/${config.folds}: resuming ${resumePoint(trainer)}`);
        const note = cosineResumeNote(trainer);
        if (note) log(note);
      } else {
        const info = await withLog(trainer, log, () => trainer.prepare(train));
        if (!cvDir) {
          // The first engine is built before the CV folder exists: a bad device or model leaves nothing behind.
          log(describeModel(trainer, info.parameterCount));
          cvDir = await createRunDir(options.runsDir ?? 'runs', `${trainer.options.model}-cv${config.folds}`);
          log(`cross-validation folder: ${cvDir}`);
          await fsp.writeFile(path.join(cvDir, RUN_FILES.config), JSON.stringify(config, null, 2));
          await writeFoldsCsv(path.join(cvDir, RUN_FILES.folds), assignments);
        }
        const dir = path.join(cvDir, foldDirName(fold));
        // A fold folder left without a checkpoint (killed while starting) holds nothing to keep.
        await makeDirectory(dir);
        await writeRunFiles(dir, trainer, { data: config.data, csv: config.csv, folds: config.folds, fold, parameterCount: info.parameterCount }, assignments);
        log(`fold ${fold}/${config.folds}: ${train.length} train / ${valid.length} validation images`);
      }
      const result = await trainFold(trainer, path.join(cvDir, foldDirName(fold)), { train, valid, fold }, hooks);
      results.push(result);
      if (result.stopped) break;
    } catch (err) {
      // Resuming the CV folder continues this fold from its checkpoint, then the folds after it.
      if (resumableFolderOf(err)) markResumable(err, { kind: 'cv', folder: cvDir });
      throw err;
    } finally {
      await trainer.dispose();
    }
  }
  const stopped = results.length < config.folds || results.some((r) => r.stopped);
  if (stopped) {
    return { cvDir, folds: results, summary: null, evaluation: null, stopped: true };
  }
  const { summary, evaluation } = await summariseCv(cvDir, config.folds);
  return { cvDir, folds: results, summary, evaluation, stopped: false };
}

/**
 * Pools the folds' valid_predictions.csv into oof_predictions.csv, writes cv_summary.json, and
 * evaluates the pooled predictions into evaluation.json and report.html (in the CV folder).
 */
export async function summariseCv(cvDir: string, folds: number): Promise<{ summary: CvSummary; evaluation: Evaluation }> {
  const lines: string[] = [PREDICTION_COLUMNS.join(',')];
  for (let fold = 0; fold < folds; fold++) {
    const file = path.join(cvDir, foldDirName(fold), RUN_FILES.predictions);
    const text = await fsp.readFile(file, 'utf8').catch(() => null);
    if (text === null) throw new Error(`${file} is missing: fold ${fold} has no epoch with a defined validation AUC, so there are no out-of-fold predictions to pool`);
    lines.push(...text.trimEnd().split('\n').slice(1));
  }
  const oof = path.join(cvDir, CV_FILES.oof);
  // Atomically: a summary run again (after a resume) replaces its own files whole, never half.
  await writeFileAtomic(oof, Buffer.from(lines.join('\n') + '\n'), { overwrite: true });
  const rows = readPredictionsCsv(oof);
  const summary = crossValidationSummary(rows.map((r) => ({ target: r.target, score: r.score, patientId: r.patientId, fold: r.fold, imageName: r.imageName })));
  await writeFileAtomic(path.join(cvDir, CV_FILES.summary), Buffer.from(JSON.stringify(summary, null, 2) + '\n'), { overwrite: true });
  const { evaluation } = await evaluatePredictionsFile(oof, { out: cvDir, force: true });
  return { summary, evaluation };
}

function omit<T extends object, K extends keyof T>(object: T, keys: K[]): Omit<T, K> {
  return Object.fromEntries(Object.entries(object).filter(([k]) => !keys.includes(k as K))) as Omit<T, K>;
}

/** One line per fold plus mean +- sd and the pooled AUC with its CI. */
export function formatCvSummary(summary: CvSummary): string[] {
  const f = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : v.toFixed(4));
  const lines = summary.folds.map((fold) => `fold ${fold.fold}: AUC ${f(fold.auc)} (${fold.n} images, ${fold.positives} melanoma)${fold.reason ? ` ${fold.reason}` : ''}`);
  lines.push(`fold AUC mean ${f(summary.meanAuc)} +- ${f(summary.sdAuc)} (sd over ${summary.folds.length} folds)`);
  const ci = summary.pooled.delong ? ` 95% CI ${f(summary.pooled.delong.ci[0])}-${f(summary.pooled.delong.ci[1])} (DeLong)` : '';
  lines.push(`pooled out-of-fold AUC ${f(summary.pooled.auc)}${ci}`);
  return lines;
}
