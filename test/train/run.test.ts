/**
 * trainRun end to end on a tiny generated demo set: the run folder and its contents, and run
 * folders that are never reused.
 */
import { existsSync, promises as fsp, readFileSync } from 'fs';
import * as path from 'path';
import { decodeSafetensors } from '../../src/train/safetensors';
import { HISTORY_COLUMNS, TrainRunResult, createRunDir, dataBoundHint, epochTableHeader, epochTableRow, trainRun } from '../../src/train/run';
import { TINY_TRAINER, tempDir, tinyDemo } from './helpers';

const root = tempDir('melanoma-run-');
const runsDir = path.join(root, 'runs');
let dataDir: string;
let first: TrainRunResult;
const logLines: string[] = [];
const epochs: number[] = [];

beforeAll(async () => {
  dataDir = (await tinyDemo(root)).dir;
  first = await trainRun({
    ...TINY_TRAINER,
    data: dataDir,
    epochs: 2,
    folds: 4,
    fold: 0,
    runsDir,
    log: (line) => logLines.push(line),
    onEpoch: (record) => epochs.push(record.epoch),
  });
});

test('two epochs: history with a numeric validation AUC, events and log lines', () => {
  expect(logLines.filter((l) => l.startsWith('warning:'))).toEqual([]); // synthetic lesions are neither blank nor streaked
  expect(first.stopped).toBe(false);
  expect(first.history.map((r) => r.epoch)).toEqual([1, 2]);
  expect(epochs).toEqual([1, 2]);
  for (const record of first.history) {
    expect(typeof record.validAuc).toBe('number');
    expect(record.validAuc).toBeGreaterThanOrEqual(0);
    expect(record.validAuc).toBeLessThanOrEqual(1);
    expect(Number.isFinite(record.trainLoss)).toBe(true);
    expect(Number.isFinite(record.validLoss)).toBe(true);
  }
  expect(first.best).not.toBeNull();
  expect(first.best!.validAuc).toBe(Math.max(...first.history.map((r) => r.validAuc!)));
  expect(path.dirname(first.runDir)).toBe(runsDir);
  expect(logLines.some((l) => l.startsWith(`run folder: ${first.runDir}`))).toBe(true);
  expect(logLines.some((l) => /fold 0 of 4: \d+ train \/ \d+ validation images/.test(l))).toBe(true);
});

test('the run folder holds config.json, folds.csv, history.csv (2 rows), last and best checkpoints', async () => {
  const files = await fsp.readdir(first.runDir);
  for (const name of ['config.json', 'folds.csv', 'history.csv', 'last.safetensors', 'best.safetensors']) expect(files).toContain(name);
  expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);

  const config = JSON.parse(readFileSync(path.join(first.runDir, 'config.json'), 'utf8'));
  expect(config).toMatchObject({ data: dataDir, folds: 4, fold: 0, positiveWeight: expect.any(Number) });
  expect(config.options).toMatchObject({ model: 'efficientnet-b0', widthFactor: 0.25, stageLimit: 3, imageSize: 32, epochs: 2, device: 'cpu' });
  expect(config.parameterCount).toBeGreaterThan(1000);

  const folds = readFileSync(path.join(first.runDir, 'folds.csv'), 'utf8').trim().split('\n');
  expect(folds[0]).toBe('image_name,patient_id,target,fold');
  expect(folds).toHaveLength(1 + 32);
  const foldOf = new Map<string, string>();
  for (const line of folds.slice(1)) {
    const [, patient, , fold] = line.split(',');
    expect(['0', '1', '2', '3']).toContain(fold);
    // Patient-level folds: a patient's images never straddle two folds.
    expect(foldOf.get(patient) ?? fold).toBe(fold);
    foldOf.set(patient, fold);
  }

  const history = readFileSync(path.join(first.runDir, 'history.csv'), 'utf8').trim().split('\n');
  expect(history[0]).toBe(HISTORY_COLUMNS.join(','));
  expect(history).toHaveLength(3);
  const auc = HISTORY_COLUMNS.indexOf('validAuc');
  expect(history.slice(1).map((row) => row.split(',')[0])).toEqual(['1', '2']);
  for (const row of history.slice(1)) expect(Number.isFinite(Number(row.split(',')[auc]))).toBe(true);

  const last = decodeSafetensors(readFileSync(path.join(first.runDir, 'last.safetensors')));
  expect(last.metadata['melanoma.epochs_done']).toBe('2');
  expect(last.tensors.some((t) => t.name === 'conv_stem.weight')).toBe(true);
  const best = decodeSafetensors(readFileSync(path.join(first.runDir, 'best.safetensors')));
  expect(best.metadata['melanoma.epochs_done']).toBe(String(first.best!.epoch));
});

test('an epoch that waited more than half its time for images gets the advice to convert them', () => {
  expect(dataBoundHint({ epoch: 1, seconds: 100, dataWaitSeconds: 40, imageSize: 256 })).toBeNull();
  expect(dataBoundHint({ epoch: 1, seconds: 0, dataWaitSeconds: 0, imageSize: 256 })).toBeNull();
  expect(dataBoundHint({ epoch: 2, seconds: 100, dataWaitSeconds: 62.5, imageSize: 384 })).toBe(
    'epoch 2 waited 62.5 s of 100.0 s (63%) for decoded images: training is data-bound. ' +
      'Convert the images once to TFRecords at the training size (melanoma convert --data YOUR_DATA --size 384 --out NEW_FOLDER) and train from that folder, or give more --workers, or on a GPU decode there (--decode nvjpeg)',
  );
  // The tiny run here is not data-bound: no advice in its log.
  expect(logLines.some((l) => l.includes('data-bound'))).toBe(first.history.some((r) => r.dataWaitSeconds > 0.5 * r.seconds));
});

test('the epoch table keeps its columns when a loss blows up', () => {
  const header = epochTableHeader();
  const row = (trainLoss: number, validLoss: number | null) => epochTableRow({ ...first.history[0], trainLoss, validLoss });
  const columnEnds = (line: string) => [...line.matchAll(/\S+/g)].map((m) => m.index! + m[0].length);
  expect(columnEnds(row(0.6931, 0.7))).toEqual(columnEnds(header));
  expect(columnEnds(row(2.35e14, 7.61e22))).toEqual(columnEnds(header));
  expect(row(2.35e14, 7.61e22)).toContain('  2.350e+14   7.610e+22');
  expect(row(0.5, null)).toContain('n/a');
});

test('a second run never reuses the first folder', async () => {
  const second = await trainRun({ ...TINY_TRAINER, data: dataDir, epochs: 1, folds: 4, runsDir });
  expect(second.runDir).not.toBe(first.runDir);
  expect(existsSync(path.join(second.runDir, 'last.safetensors'))).toBe(true);
  // The first run's files are untouched (its history still has 2 rows).
  expect(readFileSync(path.join(first.runDir, 'history.csv'), 'utf8').trim().split('\n')).toHaveLength(3);
  expect((await fsp.readdir(runsDir)).sort()).toEqual([path.basename(first.runDir), path.basename(second.runDir)].sort());
});

test('createRunDir: the same time and model give new suffixed folders, never an existing one', async () => {
  const now = new Date('2026-01-02T03:04:05.678Z');
  const dirs = [];
  for (let i = 0; i < 3; i++) dirs.push(await createRunDir(path.join(root, 'stamps'), 'efficientnet-b3', now));
  expect(dirs.map((d) => path.basename(d))).toEqual(['20260102-030405-efficientnet-b3', '20260102-030405-efficientnet-b3-2', '20260102-030405-efficientnet-b3-3']);
  for (const d of dirs) expect((await fsp.stat(d)).isDirectory()).toBe(true);
});

test('bad run options are rejected before any folder is made', async () => {
  const before = await fsp.readdir(runsDir);
  await expect(trainRun({ ...TINY_TRAINER, data: dataDir, runsDir, folds: 1 })).rejects.toThrow(new RangeError('Expected integer >= 2 for folds but received 1'));
  await expect(trainRun({ ...TINY_TRAINER, data: dataDir, runsDir, fold: 5, folds: 5 })).rejects.toThrow(
    new RangeError('Expected integer between 0 and 4 for fold but received 5'),
  );
  await expect(trainRun({ ...TINY_TRAINER, data: dataDir, runsDir, batchSize: 0 })).rejects.toThrow(
    new RangeError('Expected integer between 1 and 4096 for batchSize but received 0 of type number'),
  );
  expect(await fsp.readdir(runsDir)).toEqual(before);
});
