/**
 * One training run as a researcher runs it: open the data (or the built-in demo set), assign
 * patient-level folds, train one fold with validation, and keep everything in a run folder that
 * is never overwritten: config.json, folds.csv, history.csv/jsonl, last and best checkpoints.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { ensureDemoDataset } from '../data/demo';
import { openDataset } from '../data/isic';
import { splitByFold, stratifiedGroupKFold, writeFoldsCsv } from '../folds';
import type { TrainerOptions } from '../model/config';
import { BatchProgress, EpochRecord, Trainer } from './trainer';

export interface TrainRunOptions extends TrainerOptions {
  /** A folder of SIIM-ISIC TFRecords, a JPEG folder with train.csv, a CSV, or 'demo'. */
  data?: string;
  /** CSV joined on image_name (TFRecords) or read (JPEG layout). */
  csv?: string;
  folds?: number;
  /** The validation fold (0-based). */
  fold?: number;
  /** Folder that receives run folders (default ./runs). */
  runsDir?: string;
  signal?: AbortSignal;
  log?: (line: string) => void;
  onBatch?: (progress: BatchProgress) => void;
  onEpoch?: (record: EpochRecord) => void;
}

export interface TrainRunResult {
  runDir: string;
  history: EpochRecord[];
  best: EpochRecord | null;
  stopped: boolean;
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
  'lr',
  'step',
  'seconds',
  'trainImagesPerSecond',
  'dataWaitSeconds',
  'skippedImages',
];

/** A new folder under `root` named after the time and model; an existing name gets a suffix. */
export async function createRunDir(root: string, model: string, now = new Date()): Promise<string> {
  await fsp.mkdir(root, { recursive: true });
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

export async function trainRun(options: TrainRunOptions = {}): Promise<TrainRunResult> {
  const { data = DEMO_DATA, csv, folds = 5, fold = 0, runsDir = 'runs', signal, log = () => undefined, onBatch, onEpoch, ...trainerOptions } = options;
  if (!Number.isInteger(folds) || folds < 2) throw new RangeError(`Expected integer >= 2 for folds but received ${folds}`);
  if (!Number.isInteger(fold) || fold < 0 || fold >= folds) throw new RangeError(`Expected integer between 0 and ${folds - 1} for fold but received ${fold}`);
  const isDemo = data === DEMO_DATA;
  // Validate the options before touching data or disk.
  const given = Object.fromEntries(Object.entries(trainerOptions).filter(([, v]) => v !== undefined)) as TrainerOptions;
  const trainer = new Trainer(isDemo ? { ...DEMO_PRESET, ...given } : given);
  try {
    const dataPath = isDemo ? await ensureDemoDataset({}, log) : data;
    const dataset = await openDataset(dataPath, { csv });
    const assignments = stratifiedGroupKFold(dataset.samples, folds, trainer.options.seed);
    const { train, valid } = splitByFold(dataset.samples, assignments, fold);
    log(
      `data: ${isDemo ? 'built-in demo set' : dataPath} (${dataset.format}), ${dataset.samples.length} images; ` +
        `fold ${fold} of ${folds}: ${train.length} train / ${valid.length} validation images`,
    );
    // The engine is built before the run folder exists, so a bad device or model leaves nothing behind.
    const info = await trainer.prepare(train);
    const o = trainer.options;
    log(
      `model: ${o.model}${o.widthFactor !== 1 ? ` x${o.widthFactor} width` : ''}, ${info.parameterCount.toLocaleString('en-US')} parameters, ` +
        `${o.device} ${o.precision}, ${o.imageSize}px, batch ${o.batchSize}` +
        `${o.accumulate > 1 ? ` x ${o.accumulate} accumulated = ${o.batchSize * o.accumulate}` : ''}, lr ${o.lr}, ` +
        `pos_weight ${trainer.positiveWeight?.toFixed(3)}`,
    );
    const runDir = await createRunDir(runsDir, o.model);
    log(`run folder: ${runDir}`);
    await writeFoldsCsv(path.join(runDir, 'folds.csv'), assignments);
    await fsp.writeFile(
      path.join(runDir, 'config.json'),
      JSON.stringify({ options: o, data: dataPath, csv: csv ?? null, folds, fold, positiveWeight: trainer.positiveWeight, parameterCount: info.parameterCount }, null, 2),
    );
    await fsp.writeFile(path.join(runDir, 'history.csv'), HISTORY_COLUMNS.join(',') + '\n');

    let best: EpochRecord | null = null;
    if (onBatch) trainer.on('batch', onBatch);
    if (onEpoch) trainer.on('epoch', onEpoch);
    const history = await trainer.fit(
      { train, valid },
      {
        signal,
        afterEpoch: async (record) => {
          await fsp.appendFile(path.join(runDir, 'history.csv'), HISTORY_COLUMNS.map((c) => formatCell(record[c])).join(',') + '\n');
          await fsp.appendFile(path.join(runDir, 'history.jsonl'), JSON.stringify(record) + '\n');
          // The run folder is this run's own: its checkpoints are replaced as training goes on.
          await trainer.save(path.join(runDir, 'last.safetensors'), { overwrite: true });
          if (record.validAuc !== null && (best === null || record.validAuc > (best.validAuc ?? -1))) {
            best = record;
            await trainer.save(path.join(runDir, 'best.safetensors'), { overwrite: true });
          }
        },
      },
    );
    const stopped = history.length < o.epochs;
    if (stopped && history.length === 0) log('stopped before the first epoch ended: no checkpoint was written');
    return { runDir, history, best, stopped };
  } finally {
    await trainer.dispose();
  }
}

/** One epoch as a fixed-width table row (the header is epochTableHeader()). */
export function epochTableRow(r: EpochRecord): string {
  const num = (v: number | null, digits: number) => (v === null ? 'n/a' : v.toFixed(digits));
  return [
    String(r.epoch).padStart(5),
    num(r.trainLoss, 4).padStart(10),
    num(r.validLoss, 4).padStart(10),
    num(r.validAuc, 4).padStart(9),
    num(r.trainImagesPerSecond, 1).padStart(8),
    `${r.seconds.toFixed(1)}s`.padStart(8),
  ].join('  ');
}

export function epochTableHeader(): string {
  return ['epoch', 'train_loss', 'valid_loss', 'valid_auc', 'img/s', 'time'].map((h, i) => h.padStart([5, 10, 10, 9, 8, 8][i])).join('  ');
}
