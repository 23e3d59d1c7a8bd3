/**
 * One training run as a researcher runs it: open the data (or the built-in demo set), assign
 * patient-level folds, train one fold with validation, and keep everything in a run folder that
 * is never overwritten: config.json, folds.csv, history.csv/jsonl, last and best checkpoints.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { isDeepStrictEqual } from 'util';
import { ensureDemoDataset } from '../data/demo';
import { DataError } from '../data/errors';
import { degenerateWarning, sampleDegenerateImages } from '../data/image-content';
import { openDataset } from '../data/isic';
import type { DecodeBackend, LesionSample } from '../data/types';
import { checkFolderWritable, csvField, makeDirectory, writeFileAtomic } from '../files';
import { evaluatePredictionsFile } from '../cli/evaluate';
import { FoldAssignment, readFoldsCsv, splitByFold, stratifiedGroupKFold, writeFoldsCsv } from '../folds';
import { ResolvedOptions, TrainerOptions, stripUndefined } from '../model/config';
import { BatchProgress, EpochRecord, Prediction, Trainer, refuseUnlabelled, trainingSetFingerprint } from './trainer';
import { learningRateAt } from './schedule';

export interface TrainRunOptions extends TrainerOptions, RunHooks {
  /** A folder of SIIM-ISIC TFRecords, a JPEG folder with train.csv, a CSV, or 'demo'. */
  data?: string;
  /** CSV joined on image_name (TFRecords) or read (JPEG layout). */
  csv?: string;
  folds?: number;
  /** The validation fold (0-based). */
  fold?: number;
  /** Folder that receives run folders (default ./runs). */
  runsDir?: string;
}

export interface TrainRunResult {
  runDir: string;
  history: EpochRecord[];
  best: EpochRecord | null;
  /** Stopped by the signal (Ctrl-C) before the last epoch: resume it. */
  stopped: boolean;
  /** Why training ended before `epochs` (early stopping, an abort), or null. */
  stopReason: string | null;
}

export const DEMO_DATA = 'demo';

/** Settings that make the demo finish in a few minutes on a 2-core CPU with a small network. */
export const DEMO_PRESET: TrainerOptions = {
  model: 'efficientnet-b0',
  widthFactor: 0.5,
  imageSize: 64,
  batchSize: 16,
  epochs: 4,
  lr: 2e-3,
  device: 'cpu',
};

export const HISTORY_COLUMNS: (keyof EpochRecord)[] = [
  'epoch',
  'trainLoss',
  'validLoss',
  'validAuc',
  'validPartialAuc',
  'validSpecificityAt95',
  'lr',
  'imageSize',
  'step',
  'seconds',
  'trainImagesPerSecond',
  'dataWaitSeconds',
  'skippedImages',
];

/** A new folder under `root` named after the time and model; an existing name gets a suffix. */
export async function createRunDir(root: string, model: string, now = new Date()): Promise<string> {
  await makeDirectory(root);
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  for (let attempt = 0; ; attempt++) {
    const dir = path.join(root, `${stamp}-${model}${attempt ? `-${attempt + 1}` : ''}`);
    try {
      await fsp.mkdir(dir); // not recursive: fails when the folder exists, so nothing is reused
      return dir;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

function formatCell(value: unknown): string {
  if (value === null || value === undefined) return '';
  return typeof value === 'number' && !Number.isInteger(value) ? value.toPrecision(6) : String(value);
}

/** The files of a run folder, by role. */
export const RUN_FILES = {
  config: 'config.json',
  folds: 'folds.csv',
  historyCsv: 'history.csv',
  historyJsonl: 'history.jsonl',
  last: 'last.safetensors',
  best: 'best.safetensors',
  predictions: 'valid_predictions.csv',
} as const;

/** What a run folder's config.json records besides the options: enough to resume it. */
export interface RunConfig {
  options: ResolvedOptions;
  data: string;
  csv: string | null;
  folds: number;
  fold: number;
  positiveWeight: number | null;
  parameterCount: number;
}

export const PREDICTION_COLUMNS = ['image_name', 'patient_id', 'target', 'score', 'fold'] as const;

/**
 * `image_name,patient_id,target,score,fold` rows; score = sigmoid(logit). Without a fold (null)
 * or patient ids there is no such column, as the predictions reader refuses empty cells.
 */
export function predictionsCsv(predictions: readonly Prediction[], fold: number | null): string {
  const withPatients = predictions.some((p) => p.patientId !== '');
  const columns = PREDICTION_COLUMNS.filter((c) => (c !== 'fold' || fold !== null) && (c !== 'patient_id' || withPatients));
  const lines = [columns.join(',')];
  for (const p of predictions) {
    const cells: Record<(typeof PREDICTION_COLUMNS)[number], string> = { image_name: p.imageName, patient_id: p.patientId, target: p.target === null ? '' : String(p.target), score: String(p.probability), fold: String(fold) };
    lines.push(columns.map((c) => csvField(cells[c])).join(','));
  }
  return lines.join('\n') + '\n';
}


/** This run's own text files are replaced whole: a temporary file, then a rename. */
function writeTextAtomic(file: string, text: string): Promise<void> {
  return writeFileAtomic(file, Buffer.from(text), { overwrite: true });
}

async function exists(file: string): Promise<boolean> {
  return (await fsp.stat(file).catch(() => null)) !== null;
}

/** Callbacks and the stop signal of a run (shared by train, cv and resume). */
export interface RunHooks {
  /** Stops after the current batch (or accumulation window) and saves last.safetensors there. */
  signal?: AbortSignal;
  /**
   * Inside an epoch, last.safetensors is also written when this many minutes have passed since
   * the last checkpoint (default 30; 0 = at epoch ends only), so a killed run loses at most that.
   */
  checkpointMinutes?: number;
  log?: (line: string) => void;
  onBatch?: (progress: BatchProgress) => void;
  onEpoch?: (record: EpochRecord) => void;
}

/** A folder that an error stopped and that resume continues once the data are fixed. */
export interface ResumableFolder {
  /** 'run': `resumeRun(folder)` (`melanoma train --resume`); 'cv': `crossValidate({ resume: folder })` (`melanoma cv --resume`). */
  kind: 'run' | 'cv';
  folder: string;
}

// Keyed by the error object, so the error keeps its own class and code for whoever branches on them.
const stoppedFolders = new WeakMap<object, ResumableFolder>();

/**
 * The folder a data error (an undecodable image, a corrupt record, a missing file) stopped in
 * the middle of training, or null. Its last.safetensors holds the newest checkpoint; after the
 * data are fixed, resuming continues from there. Other errors (NaN loss, out of memory) get
 * null: resume keeps the options that caused them.
 */
export function resumableFolderOf(err: unknown): ResumableFolder | null {
  return typeof err === 'object' && err !== null ? (stoppedFolders.get(err) ?? null) : null;
}

/** @internal crossValidate marks the CV folder in place of the fold's run folder. */
export function markResumable(err: unknown, folder: ResumableFolder): void {
  if (err instanceof DataError) stoppedFolders.set(err, folder);
}

/**
 * Trains one fold into `runDir` with `trainer` (fresh or loaded from the folder's last
 * checkpoint). After every epoch: a history row, last.safetensors, and on a better validation
 * AUC best.safetensors and valid_predictions.csv. A checkpoint of the untrained state is written
 * first, so a run killed in its first epoch can be resumed too. When training ends (all epochs or
 * early stopping) the best epoch's predictions are evaluated into evaluation.json and report.html.
 * @internal shared by trainRun, resumeRun and crossValidate
 */
export async function trainFold(
  trainer: Trainer,
  runDir: string,
  split: { train: LesionSample[]; valid: LesionSample[]; fold: number },
  { signal, log = () => undefined, onBatch, onEpoch, checkpointMinutes = DEFAULT_CHECKPOINT_MINUTES }: RunHooks,
): Promise<TrainRunResult> {
  if (typeof checkpointMinutes !== 'number' || !(checkpointMinutes >= 0) || !Number.isFinite(checkpointMinutes))
    throw new RangeError(`Expected a number >= 0 for checkpointMinutes but received ${String(checkpointMinutes)}`);
  const file = (name: keyof typeof RUN_FILES) => path.join(runDir, RUN_FILES[name]);
  // The folder is this run's own: its checkpoints and history are replaced as training goes on.
  // A resumed run rewrites the history from its checkpoint, dropping rows of epochs it redoes.
  const restored = trainer.epochHistory;
  await writeTextAtomic(file('historyCsv'), [HISTORY_COLUMNS.join(','), ...restored.map(historyCsvRow)].join('\n') + '\n');
  await writeTextAtomic(file('historyJsonl'), restored.map((r) => JSON.stringify(r) + '\n').join(''));
  let best: EpochRecord | null = null;
  for (const r of restored) if (r.validAuc !== null && (best === null || r.validAuc > (best.validAuc ?? -1))) best = r;
  if (trainer.completedEpochs === 0 && !trainer.epochInProgress) await trainer.save(file('last'), { overwrite: true });
  let lastCheckpointAt = performance.now();
  let hintedDataBound = false;

  if (onBatch) trainer.on('batch', onBatch);
  if (onEpoch) trainer.on('epoch', onEpoch);
  trainer.on('log', log);
  try {
    const history = await trainer.fit(split, {
      signal,
      withinEpoch: {
        due: () => checkpointMinutes > 0 && performance.now() - lastCheckpointAt >= checkpointMinutes * 60_000,
        save: async (t) => {
          await t.save(file('last'), { overwrite: true });
          lastCheckpointAt = performance.now();
          const at = t.epochInProgress!;
          log(`checkpoint: epoch ${at.epoch}, ${at.batches} batches in, saved ${file('last')}`);
        },
      },
      afterEpoch: async (record) => {
        const hint = hintedDataBound ? null : dataBoundHint(record);
        if (hint) {
          log(hint);
          hintedDataBound = true;
        }
        await fsp.appendFile(file('historyCsv'), historyCsvRow(record) + '\n');
        await fsp.appendFile(file('historyJsonl'), JSON.stringify(record) + '\n');
        const better = record.validAuc !== null && (best === null || record.validAuc > (best.validAuc ?? -1));
        if (better) {
          best = record;
          await trainer.save(file('best'), { overwrite: true });
        }
        // Out-of-fold predictions: the best epoch's; while no epoch has a defined AUC (a fold
        // with one class only), the latest epoch's, so the fold still counts in a pooled AUC.
        const validation = trainer.lastValidationResult;
        if ((better || best === null) && validation) await writeTextAtomic(file('predictions'), predictionsCsv(validation.predictions, split.fold));
        // last.safetensors is written last: it is what resume starts from, so once it holds this
        // epoch, the best checkpoint and the predictions of this epoch are already on disk.
        await trainer.save(file('last'), { overwrite: true });
        lastCheckpointAt = performance.now();
      },
    });
    const reason = trainer.stopReason;
    const stopped = reason !== null && reason.startsWith('aborted');
    if (stopped) {
      // Stopped inside an epoch: the state there, with how far the epoch got, so resume continues
      // from the next batch. (Stopped between epochs, last.safetensors already holds the state.)
      const at = trainer.epochInProgress;
      if (at) {
        await trainer.save(file('last'), { overwrite: true });
        log(`${reason}: saved ${file('last')}; resume continues epoch ${at.epoch} from batch ${at.batches + 1}`);
      }
    } else if (best === null) {
      log(`no evaluation report: the validation AUC of ${split.valid.length} image(s) is undefined (${trainer.epochHistory.at(-1)?.validAucNote ?? 'no epoch'})`);
    } else {
      // evaluate's own defaults, so the figures are those `melanoma evaluate RUN` prints.
      await evaluatePredictionsFile(file('predictions'), { out: runDir, force: true });
      log(`wrote ${path.join(runDir, 'evaluation.json')} and report.html (best epoch ${(best as EpochRecord).epoch})`);
    }
    return { runDir, history, best, stopped, stopReason: reason };
  } catch (err) {
    markResumable(err, { kind: 'run', folder: runDir });
    throw err;
  } finally {
    if (onBatch) trainer.off('batch', onBatch);
    if (onEpoch) trainer.off('epoch', onEpoch);
    trainer.off('log', log);
  }
}

/** Validates options and reads the data, then trains `fold` into a new run folder. */
export async function trainRun(options: TrainRunOptions = {}): Promise<TrainRunResult> {
  const { data = DEMO_DATA, csv, folds = 5, fold = 0, runsDir = 'runs', signal, log = () => undefined, onBatch, onEpoch, checkpointMinutes, ...trainerOptions } = options;
  checkFolds(folds, fold);
  const isDemo = data === DEMO_DATA;
  // Validate the options before touching data or disk.
  const trainer = new Trainer(withPreset(isDemo, trainerOptions));
  try {
    await checkFolderWritable(runsDir);
    const { dataPath, dataset, assignments, contentWarning } = await openRunData(data, csv, folds, trainer.options.seed, log);
    const { train, valid } = splitByFold(dataset.samples, assignments, fold);
    log(
      `data: ${isDemo ? 'built-in demo set' : dataPath} (${dataset.format}), ${dataset.samples.length} images; ` +
        `fold ${fold} of ${folds}: ${train.length} train / ${valid.length} validation images`,
    );
    if (contentWarning) log(contentWarning);
    // The engine is built before the run folder exists, so a bad device or model leaves nothing behind.
    const info = await withLog(trainer, log, () => trainer.prepare(train));
    log(describeModel(trainer, info.parameterCount));
    const runDir = await createRunDir(runsDir, trainer.options.model);
    log(`run folder: ${runDir}`);
    await writeRunFiles(runDir, trainer, { data: dataPath, csv: csv ?? null, folds, fold, parameterCount: info.parameterCount }, assignments);
    return await trainFold(trainer, runDir, { train, valid, fold }, { signal, log, onBatch, onEpoch, checkpointMinutes });
  } finally {
    await trainer.dispose();
  }
}

export const DEFAULT_CHECKPOINT_MINUTES = 30;

/**
 * Advice when an epoch spent more than half its time waiting for decoded images: the engine is
 * starved, and the usual cause is decoding large JPEGs (ISIC 2020's are up to 6000 x 4000 px).
 */
export function dataBoundHint(record: Pick<EpochRecord, 'epoch' | 'seconds' | 'dataWaitSeconds' | 'imageSize'>): string | null {
  if (!(record.seconds > 0) || record.dataWaitSeconds <= 0.5 * record.seconds) return null;
  const share = Math.round((100 * record.dataWaitSeconds) / record.seconds);
  return (
    `epoch ${record.epoch} waited ${record.dataWaitSeconds.toFixed(1)} s of ${record.seconds.toFixed(1)} s (${share}%) for decoded images: training is data-bound. ` +
    `Convert the images once to TFRecords at the training size (melanoma convert --data YOUR_DATA --size ${record.imageSize} --out NEW_FOLDER) and train from that folder, or give more --workers, or on a GPU decode there (--decode nvjpeg)`
  );
}

/** The trainer options a resumed run may change (the rest come from its checkpoint): how long it trains and how this machine loads its data. */
export const RESUME_OVERRIDES = ['epochs', 'workers', 'prefetch', 'decode'] as const;

/** The RESUME_OVERRIDES that `options` sets (train and cv resume alike). */
export function resumeOverrides(options: Pick<TrainerOptions, (typeof RESUME_OVERRIDES)[number]>): TrainerOptions {
  return Object.fromEntries(RESUME_OVERRIDES.filter((k) => options[k] !== undefined).map((k) => [k, options[k]]));
}

/**
 * Options a checkpoint may differ in from its run's config.json: what a resume may change, the
 * machine's own (precision and memory layout follow the device), and pretrained (a checkpoint
 * holds the fine-tuned weights instead).
 */
const NOT_THE_RUNS_OWN: readonly string[] = [...RESUME_OVERRIDES, 'device', 'precision', 'channelsLast', 'cudaGraph', 'pretrained'];

/**
 * @internal Refuses, before anything in the run folder is written, a checkpoint that is not the
 * run's own (copied in from another run or fold): its options must be config.json's, and the
 * training set it last trained on this fold's.
 */
export function checkCheckpointIsTheRuns(checkpoint: string, trainer: Trainer, config: Pick<RunConfig, 'options' | 'fold'>, train: readonly LesionSample[]): void {
  const fix = `put the run's own ${path.basename(checkpoint)} back, or start a new run (nothing was changed)`;
  const differing = (Object.keys(config.options) as (keyof ResolvedOptions)[]).filter((key) => !NOT_THE_RUNS_OWN.includes(key) && !isDeepStrictEqual(config.options[key], trainer.options[key]));
  if (differing.length > 0) {
    const shown = differing.slice(0, 3).map((key) => `${key} ${JSON.stringify(trainer.options[key])} where config.json has ${JSON.stringify(config.options[key])}`);
    const more = differing.length > 3 ? ` (and ${differing.length - 3} more)` : '';
    throw new RangeError(`${checkpoint} is not this run's checkpoint: it was made with ${shown.join(', ')}${more}; ${fix}`);
  }
  const trainSet = trainingSetFingerprint(train);
  if (trainer.trainingSet !== null && trainer.trainingSet !== trainSet)
    throw new RangeError(
      `${checkpoint} is not this run's checkpoint: it last trained on another training set than fold ${config.fold}'s (fingerprint ${trainer.trainingSet}, this fold's ${trainSet}: another fold's checkpoint, or images added or relabelled since); ${fix}`,
    );
}

/** Options that may change when a run is resumed (the rest come from its checkpoint). */
export interface ResumeOptions extends RunHooks {
  /** Train up to this many epochs in all (default: the run's own). */
  epochs?: number;
  workers?: number;
  prefetch?: number;
  /** Where training JPEGs are decoded now ('sharp' or 'nvjpeg'): the machine's choice, not the run's. */
  decode?: DecodeBackend;
}

/**
 * Continues a run folder from its last checkpoint: model, optimizer, step, RNG state and history
 * come back, the folds from folds.csv, so on CPU the result equals an uninterrupted run.
 */
export async function resumeRun(runDir: string, { epochs, workers, prefetch, decode, ...hooks }: ResumeOptions = {}): Promise<TrainRunResult> {
  const config = await readRunConfig(runDir);
  const lastCheckpoint = path.join(runDir, RUN_FILES.last);
  if (!(await exists(lastCheckpoint)))
    throw new RangeError(`Cannot resume ${runDir}: it has no ${RUN_FILES.last} (the run stopped before its first checkpoint); start a new run instead`);
  const log = hooks.log ?? (() => undefined);
  const overrides = resumeOverrides({ epochs, workers, prefetch, decode });
  const assignments = await readFoldsCsv(path.join(runDir, RUN_FILES.folds));
  const dataset = await openDataset(config.data, { csv: config.csv ?? undefined });
  const { train, valid } = splitByFold(dataset.samples, assignments, config.fold);
  const trainer = await Trainer.load(lastCheckpoint, overrides);
  try {
    checkCheckpointIsTheRuns(lastCheckpoint, trainer, config, train);
    log(`resuming ${runDir} ${resumePoint(trainer)}; fold ${config.fold}: ${train.length} train / ${valid.length} validation images`);
    const note = cosineResumeNote(trainer);
    if (note) log(note);
    return await trainFold(trainer, runDir, { train, valid, fold: config.fold }, hooks);
  } finally {
    await trainer.dispose();
  }
}

/** Where a loaded run continues: "after epoch 2 of 5", or "in epoch 3 of 5, after 120 of 400 batches". */
export function resumePoint(trainer: Trainer): string {
  const at = trainer.epochInProgress;
  return at
    ? `in epoch ${at.epoch} of ${trainer.options.epochs}, after ${at.batches} of ${at.batchesInEpoch} batches`
    : `after epoch ${trainer.completedEpochs} of ${trainer.options.epochs}`;
}

/**
 * A cosine schedule spans the run's epochs, so a run extended with --epochs gets a stretched
 * curve and its rate jumps back up: the line that says so, or null when the rate does not rise.
 */
export function cosineResumeNote(trainer: Trainer): string | null {
  const o = trainer.options;
  const last = trainer.epochHistory.at(-1);
  const inProgress = trainer.epochInProgress;
  if (o.schedule !== 'cosine' || !last || trainer.completedEpochs >= o.epochs) return null;
  // Where training continues, and the rate it last used.
  const at = trainer.completedEpochs + (inProgress ? inProgress.batches / inProgress.batchesInEpoch : 0);
  const previous = inProgress ? { lr: inProgress.lr, where: `the checkpoint, ${inProgress.batches} batches into epoch ${inProgress.epoch}, was at` } : { lr: last.lr, where: `epoch ${last.epoch} ended at` };
  const next = learningRateAt(o, at, trainer.epochHistory);
  // After warm-up an unchanged cosine only falls; a rise means the run was extended.
  if (at < o.warmupEpochs || !(next > previous.lr)) return null;
  return `the cosine schedule now spans ${o.epochs} epochs, so the rate goes back up: training continues at lr ${next.toExponential(2)} (${previous.where} ${previous.lr.toExponential(2)})`;
}

/**
 * @internal A run or cv folder's config.json, parsed, for resume. A missing or damaged one is
 * refused, naming the file; `folder` says what to pass instead.
 */
export async function readFolderConfig<T>(dir: string, folder: string): Promise<T> {
  const file = path.join(dir, RUN_FILES.config);
  const text = await fsp.readFile(file, 'utf8').catch(() => null);
  if (text === null) throw new RangeError(`Cannot resume ${dir}: no ${RUN_FILES.config} there; pass ${folder}`);
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new RangeError(`Cannot resume ${dir}: ${file} is not valid JSON (${(err as Error).message}): restore that file, or pass ${folder}`);
  }
}

/**
 * The names of the images the run folder `runDir` trained on (its folds.csv, all but the fold
 * its config.json validates on), or null where that cannot be told (no run folder there).
 */
export async function trainingImagesOf(runDir: string): Promise<Set<string> | null> {
  const config = await readRunConfig(runDir).catch(() => null);
  if (!config || typeof config.fold !== 'number') return null;
  const assignments = await readFoldsCsv(path.join(runDir, RUN_FILES.folds)).catch(() => null);
  return assignments && new Set(assignments.filter((a) => a.fold !== config.fold).map((a) => a.imageName));
}

/** Reads and checks a run folder's config.json. */
export async function readRunConfig(runDir: string): Promise<RunConfig> {
  const config = await readFolderConfig<RunConfig & { kind?: string }>(runDir, 'a run folder made by `melanoma train` (e.g. runs/20261125-203257-efficientnet-b0)');
  if (config.kind === 'cv') throw new RangeError(`${runDir} is a cross-validation folder: resume it with \`melanoma cv --resume ${runDir}\``);
  return config;
}

/** @internal */
export function checkFolds(folds: number, fold?: number): void {
  if (!Number.isInteger(folds) || folds < 2) throw new RangeError(`Expected integer >= 2 for folds but received ${folds}`);
  if (fold !== undefined && (!Number.isInteger(fold) || fold < 0 || fold >= folds))
    throw new RangeError(`Expected integer between 0 and ${folds - 1} for fold but received ${fold}`);
}

/** @internal the demo preset under the user's options; undefined options dropped. */
export function withPreset(isDemo: boolean, options: TrainerOptions): TrainerOptions {
  const given = stripUndefined(options);
  if (!isDemo) return given;
  const { model, widthFactor, imageSize, epochs, ...training } = DEMO_PRESET;
  return {
    ...training,
    // Pretrained weights bring their own architecture: the preset's small model would conflict.
    ...(given.pretrained ? {} : { model, widthFactor }),
    // Progressive stages bring their own sizes and epochs: the preset's would conflict.
    ...(given.imageSizes ? {} : { imageSize, epochs }),
    ...given,
  };
}

/** Runs `work` with the trainer's log lines (e.g. what prepare() loaded) forwarded to `log`. */
export async function withLog<T>(trainer: Trainer, log: (line: string) => void, work: () => Promise<T>): Promise<T> {
  trainer.on('log', log);
  try {
    return await work();
  } finally {
    trainer.off('log', log);
  }
}

/** @internal opens the data (generating the demo set when asked) and assigns patient-level folds. */
export async function openRunData(data: string, csv: string | undefined, folds: number, seed: number, log: (line: string) => void, { checkContent = true } = {}) {
  const dataPath = data === DEMO_DATA ? await ensureDemoDataset({}, log) : data;
  const dataset = await openDataset(dataPath, { csv });
  if (dataset.unmatchedInCsv > 0)
    log(`warning: ${dataset.unmatchedInCsv} of ${dataset.samples.length} images have no row in ${csv}: they keep the TFRecords' integer codes for sex and site`);
  // Before folds, content checks or a run folder: every fold trains on part of these.
  refuseUnlabelled(dataset.samples);
  const assignments = stratifiedGroupKFold(dataset.samples, folds, seed);
  // A few small decodes, so a set with broken exports says so before hours of training on it
  // (logged by the caller, after its line about the data).
  const contentWarning = checkContent ? degenerateWarning(await sampleDegenerateImages(dataset.samples, { seed }), dataPath, csv) : null;
  return { dataPath, dataset, assignments, contentWarning };
}

/** @internal */
export function describeModel(trainer: Trainer, parameterCount: number): string {
  const o = trainer.options;
  const sizes = o.imageSizes ? o.imageSizes.map(({ size, epochs }) => `${size}px x${epochs}`).join(' then ') : `${o.imageSize}px`;
  const schedule = o.schedule === 'constant' ? '' : ` ${o.schedule}`;
  return (
    `model: ${o.model}${o.widthFactor !== 1 ? ` x${o.widthFactor} width` : ''}${o.metadata ? ' + metadata' : ''}${o.patientContext > 0 ? ` + patient context (${o.patientContext})` : ''}, ${parameterCount.toLocaleString('en-US')} parameters, ` +
    `${o.device} ${o.precision}${o.cudaGraph ? ' cuda-graph' : ''}, ${sizes}, batch ${o.batchSize}` +
    `${o.accumulate > 1 ? ` x ${o.accumulate} accumulated = ${o.batchSize * o.accumulate}` : ''}, lr ${o.lr}${schedule}` +
    `${o.warmupEpochs > 0 ? ` (warm-up ${o.warmupEpochs} epochs)` : ''}, pos_weight ${trainer.positiveWeight?.toFixed(3)}` +
    `${o.earlyStopping > 0 ? `, early stopping patience ${o.earlyStopping}` : ''}`
  );
}

/** @internal config.json and folds.csv of a new run folder. */
export async function writeRunFiles(
  runDir: string,
  trainer: Trainer,
  config: Omit<RunConfig, 'options' | 'positiveWeight'>,
  assignments: readonly FoldAssignment[],
): Promise<void> {
  await writeFoldsCsv(path.join(runDir, RUN_FILES.folds), assignments);
  const full: RunConfig = { options: trainer.options, ...config, positiveWeight: trainer.positiveWeight };
  await fsp.writeFile(path.join(runDir, RUN_FILES.config), JSON.stringify(full, null, 2));
}

function historyCsvRow(record: EpochRecord): string {
  return HISTORY_COLUMNS.map((c) => formatCell(record[c])).join(',');
}

/** One epoch as a fixed-width table row (the header is epochTableHeader()). */
export function epochTableRow(r: EpochRecord): string {
  const num = (v: number | null, digits: number) => (v === null ? 'n/a' : v.toFixed(digits));
  // A loss that blew up (1e22 at too high an lr) as an exponent, so the columns stay aligned.
  const loss = (v: number | null) => (v !== null && Math.abs(v) >= 1e5 ? v.toExponential(3) : num(v, 4));
  return [
    String(r.epoch).padStart(5),
    loss(r.trainLoss).padStart(10),
    loss(r.validLoss).padStart(10),
    num(r.validAuc, 4).padStart(9),
    num(r.validPartialAuc ?? null, 4).padStart(6),
    num(r.validSpecificityAt95 ?? null, 3).padStart(9),
    r.lr.toExponential(2).padStart(9),
    String(r.imageSize ?? '').padStart(5),
    num(r.trainImagesPerSecond, 1).padStart(8),
    `${r.seconds.toFixed(1)}s`.padStart(8),
  ].join('  ');
}

export function epochTableHeader(): string {
  return ['epoch', 'train_loss', 'valid_loss', 'valid_auc', 'pauc', 'spec@95', 'lr', 'px', 'img/s', 'time']
    .map((h, i) => h.padStart([5, 10, 10, 9, 6, 9, 9, 5, 8, 8][i]))
    .join('  ');
}
