/**
 * Embeddings: the pooled features the classifier reads (checked against the classifier's own
 * weights), the .npy file numpy reads, the ugly-duckling distance, and `melanoma embed`.
 */
import { spawnSync } from 'child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'fs';
import * as path from 'path';
import { applyCalibrator, readCalibrator } from '../../src/calibrate';
import { embedDataset, npyFloat32, uglyDucklingScores } from '../../src/embed';
import { logit } from '../../src/metrics';
import { predict } from '../../src/predict';
import { readPredictionsCsv } from '../../src/report/predictions-csv';
import { crossValidate } from '../../src/train/cv';
import { openDataset } from '../../src/data/isic';
import type { TrainRunResult } from '../../src/train/run';
import { readSafetensorsFile } from '../../src/train/safetensors';
import { Trainer } from '../../src/train/trainer';
import { TINY_OPTIONS, tinyTrainedRun } from './tiny-data';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');
const fixture = tinyTrainedRun();
const root = fixture.root;
let data: string, run: TrainRunResult;
beforeAll(() => ({ data, run } = fixture.made()));

test('an embedding is what the classifier reads: its logit is classifier.weight . embedding + bias', async () => {
  const trainer = await Trainer.load(path.join(run.runDir, 'best.safetensors'));
  try {
    const samples = (await openDataset(data)).samples;
    const embedded = await trainer.embed(samples);
    const predicted = await trainer.predict(samples);
    expect(embedded.map((p) => p.logit)).toEqual(predicted.map((p) => p.logit));
    const { tensors } = await readSafetensorsFile(path.join(run.runDir, 'best.safetensors'));
    const tensor = (name: string) => {
      const t = tensors.find((m) => m.name === name)!;
      return new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
    };
    const weight = tensor('classifier.weight');
    const bias = tensor('classifier.bias')[0];
    expect(embedded[0].embedding).toHaveLength(weight.length);
    for (const p of embedded.slice(0, 5)) {
      const logit = p.embedding!.reduce((sum, v, k) => sum + v * weight[k], bias);
      expect(logit).toBeCloseTo(p.logit, 4);
    }
    // Deterministic in eval mode.
    expect((await trainer.embed(samples.slice(0, 3))).map((p) => Array.from(p.embedding!))).toEqual(embedded.slice(0, 3).map((p) => Array.from(p.embedding!)));
  } finally {
    await trainer.dispose();
  }
});

test('npyFloat32: numpy 1.0 format, header padded to 64 bytes, data as float32 little-endian', () => {
  const npy = npyFloat32(Float32Array.from([1, 2.5, -3, 4, 5, 6]), 2, 3);
  expect(npy.subarray(0, 8)).toEqual(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]));
  const headerLength = npy.readUInt16LE(8);
  expect((10 + headerLength) % 64).toBe(0);
  const header = npy.subarray(10, 10 + headerLength).toString('latin1');
  expect(header).toMatch(/^\{'descr': '<f4', 'fortran_order': False, 'shape': \(2, 3\), \} *\n$/);
  const body = npy.subarray(10 + headerLength);
  expect(Array.from(new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)))).toEqual([1, 2.5, -3, 4, 5, 6]);
  expect(() => npyFloat32(new Float32Array(5), 2, 3)).toThrow('Expected 2 x 3 = 6 values but received 5');
});

test('ugly duckling: 1 - cosine to the mean of the patient\'s other lesions; none for a lone lesion', () => {
  const e = (...v: number[]) => Float32Array.from(v);
  const scores = uglyDucklingScores([
    { patientId: 'A', embedding: e(1, 0) },
    { patientId: 'A', embedding: e(1, 0) },
    { patientId: 'A', embedding: e(0, 1) },
    { patientId: 'B', embedding: e(3, 4) },
    { patientId: '', embedding: e(1, 1) },
  ]);
  expect(scores[0]).toBeCloseTo(1 - Math.SQRT1_2, 12); // others' mean (0.5, 0.5)
  expect(scores[1]).toBeCloseTo(1 - Math.SQRT1_2, 12);
  expect(scores[2]).toBeCloseTo(1, 12); // orthogonal to (1, 0): the odd one out
  expect(scores.slice(3)).toEqual([null, null]);
  expect(() => uglyDucklingScores([{ patientId: 'A', embedding: e(1, 0) }, { patientId: 'A', embedding: e(1, 0, 0) }])).toThrow(
    new RangeError('Expected embeddings of one length (image 1 has 2 values) but image 2 has 3: score embeddings of one model together'),
  );
});

test('embedDataset writes both files, row for row; refuses an existing folder and a cv folder', async () => {
  const out = path.join(root, 'embeddings');
  const result = await embedDataset({ checkpoint: run.runDir, data, out });
  expect(result.images).toBe(24);
  const npy = readFileSync(path.join(out, 'embeddings.npy'));
  expect(npy.subarray(10, 10 + npy.readUInt16LE(8)).toString('latin1')).toContain(`'shape': (24, ${result.embeddingSize})`);
  const rows = readFileSync(path.join(out, 'images.csv'), 'utf8').trim().split('\n');
  expect(rows[0]).toBe('row,image_name,patient_id,target,score,ugly_duckling');
  expect(rows).toHaveLength(25);
  // The demo's patients have two images each: every row has a distance.
  expect(rows.slice(1).every((r) => /,0\.\d+(e-\d+)?$|,\d(\.\d+)?(e-\d+)?$/.test(r))).toBe(true);
  await expect(embedDataset({ checkpoint: run.runDir, data, out })).rejects.toThrow(`${out} already exists and was left untouched: write the embeddings into a new folder`);
  // A place where nothing can be written is refused before any image is embedded.
  if (existsSync('/proc/self')) {
    const scored: number[] = [];
    await expect(embedDataset({ checkpoint: run.runDir, data, out: '/proc/melanoma-nowhere/emb', onProgress: (n) => scored.push(n) })).rejects.toThrow(
      'cannot create the folder /proc/melanoma-nowhere: this file system does not allow new folders there; choose a writable location',
    );
    expect(scored).toEqual([]);
  }
  const cv = path.join(root, 'fake-cv');
  for (const fold of ['fold-0', 'fold-1']) mkdirSync(path.join(cv, fold), { recursive: true });
  for (const fold of ['fold-0', 'fold-1']) copyFileSync(path.join(run.runDir, 'best.safetensors'), path.join(cv, fold, 'best.safetensors'));
  await expect(embedDataset({ checkpoint: cv, data, out: path.join(root, 'never') })).rejects.toThrow(/^Embeddings come from one model, but .*fake-cv holds 2 checkpoints/);
  expect(existsSync(path.join(root, 'never'))).toBe(false);
});

(existsSync(CLI) ? test : test.skip)('the embed command; numpy reads the file when python3 has it', () => {
  const out = path.join(root, 'cli-embeddings');
  const cli = spawnSync(process.execPath, [CLI, 'embed', run.runDir, '--data', data, '--out', out], { encoding: 'utf8' });
  expect(cli.stderr).toBe('');
  expect(cli.status).toBe(0);
  expect(cli.stdout).toMatch(/wrote .*embeddings\.npy and .*images\.csv \(24 images x \d+ features\)\n$/);
  const python = spawnSync('python3', ['-c', `import numpy as np; e = np.load(${JSON.stringify(path.join(out, 'embeddings.npy'))}); print(e.shape, e.dtype)`], { encoding: 'utf8' });
  if (python.status === 0) expect(python.stdout.trim()).toMatch(/^\(24, \d+\) float32$/);
  else console.warn(`numpy check skipped: ${python.stderr.trim().split('\n').at(-1)}`);
});

describe('out of fold, into a patient-embedding calibrator, applied by predict', () => {
  let cvDir: string;
  beforeAll(async () => {
    cvDir = (await crossValidate({ ...TINY_OPTIONS, data, folds: 3, epochs: 1, runsDir: path.join(root, 'cv') })).cvDir;
  });

  test("a cv folder embeds out of fold: each image by the model that did not train on it, as in oof_predictions.csv", async () => {
    const out = path.join(root, 'oof-embeddings');
    await embedDataset({ checkpoint: cvDir, data, out });
    const embedded = readPredictionsCsv(path.join(out, 'images.csv'));
    const oof = new Map(readPredictionsCsv(path.join(cvDir, 'oof_predictions.csv')).map((r) => [r.imageName, r]));
    expect(embedded).toHaveLength(24);
    for (const row of embedded) {
      expect(row.fold).toBe(oof.get(row.imageName)!.fold);
      expect(row.score).toBeCloseTo(oof.get(row.imageName)!.score, 6);
    }
  });

  (existsSync(CLI) ? test : test.skip)('calibrate --kind patient-embedding --ugly-duckling, then predict applies it with the ensemble\'s distances', async () => {
    const images = path.join(root, 'oof-embeddings', 'images.csv');
    const cli = spawnSync(process.execPath, [CLI, 'calibrate', cvDir, '--kind', 'patient-embedding', '--ugly-duckling', images, '--l2', '10'], { encoding: 'utf8' });
    expect(cli.stderr).toBe('');
    expect(cli.status).toBe(0);
    expect(cli.stdout).toMatch(/^patient-embedding: 24 images/);
    const calibratorFile = path.join(cvDir, 'patient-embedding.json');
    const calibrator = await readCalibrator(calibratorFile);
    expect(calibrator.features.at(-1)).toBe('ugly_duckling');

    const result = await predict({ checkpoints: [cvDir], data, out: path.join(root, 'pe-submission.csv'), calibrator: calibratorFile });
    // By hand: the mean probability and the mean distance over the 3 fold models.
    const samples = (await openDataset(data)).samples;
    const probability = new Float64Array(24), ugly = new Float64Array(24);
    for (const fold of [0, 1, 2]) {
      const trainer = await Trainer.load(path.join(cvDir, `fold-${fold}`, 'best.safetensors'));
      try {
        const embedded = await trainer.embed(samples);
        const distances = uglyDucklingScores(embedded);
        embedded.forEach((p, i) => ((probability[i] += p.probability / 3), (ugly[i] += (distances[i] ?? 0) / 3)));
      } finally {
        await trainer.dispose();
      }
    }
    const expected = applyCalibrator(calibrator, samples.map((s, i) => ({ logit: logit(probability[i], 1e-12), patientId: s.patientId, uglyDuckling: ugly[i] })));
    result.rows.forEach((r, i) => expect(r.target).toBeCloseTo(expected[i], 6));
    // The distances matter to this check: without them the scores would differ.
    const without = applyCalibrator(calibrator, samples.map((s, i) => ({ logit: logit(probability[i], 1e-12), patientId: s.patientId, uglyDuckling: 0 })));
    expect(Math.max(...result.rows.map((r, i) => Math.abs(r.target - without[i])))).toBeGreaterThan(1e-4);
  });
});
