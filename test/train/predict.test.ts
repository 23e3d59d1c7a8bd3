/**
 * predict(): the 8 test-time views, checkpoints from files/run folders/cv folders, ensembles,
 * the submission file (never overwritten), the per-view CSV, and a bare JPEG folder.
 */
import { spawnSync } from 'child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { CalibratorKind, applyCalibrator, fitCalibrator } from '../../src/calibrate';
import { openDataset } from '../../src/data/isic';
import { OutputLocationError } from '../../src/files';
import { logit } from '../../src/metrics';
import { parsePredictionsCsv, readPredictionsCsv } from '../../src/report/predictions-csv';
import { evaluatePredictionsFile } from '../../src/cli/evaluate';
import { syntheticPredictionsCsv } from '../report/fixtures';
import { TTA_VIEWS, normalisedRanks, predict, viewTransform } from '../../src/predict';
import type { TrainRunResult } from '../../src/train/run';
import { Trainer } from '../../src/train/trainer';
import { tinyTrainedRun } from './tiny-data';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');

describe('test-time views', () => {
  // A 3x3 image whose pixel (y, x) holds the value 10y + x in all three channels.
  const n = 3;
  const image = Buffer.alloc(n * n * 3);
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) image.fill(10 * y + x, (y * n + x) * 3, (y * n + x) * 3 + 3);
  const grid = (b: Buffer) => Array.from({ length: n }, (_, y) => Array.from({ length: n }, (_, x) => b[(y * n + x) * 3]));
  const apply = (view: (typeof TTA_VIEWS)[number], b = image) => viewTransform(view)?.(b, 1, n, n) ?? b;

  test.each([
    ['hflip', [[2, 1, 0], [12, 11, 10], [22, 21, 20]]],
    ['vflip', [[20, 21, 22], [10, 11, 12], [0, 1, 2]]],
    ['transpose', [[0, 10, 20], [1, 11, 21], [2, 12, 22]]],
    ['rot90', [[20, 10, 0], [21, 11, 1], [22, 12, 2]]], // clockwise
    ['rot270', [[2, 12, 22], [1, 11, 21], [0, 10, 20]]],
    ['antitranspose', [[22, 12, 2], [21, 11, 1], [20, 10, 0]]],
  ] as const)('%s', (view, expected) => {
    expect(grid(apply(view))).toEqual(expected);
  });

  test('the 8 views are the 8 distinct symmetries, and each batch image is moved on its own', () => {
    const seen = new Set(TTA_VIEWS.map((v) => JSON.stringify(grid(apply(v)))));
    expect(seen.size).toBe(8);
    const two = Buffer.concat([image, Buffer.from(image.map((v) => 255 - v))]);
    const flipped = viewTransform('hflip')!(two, 2, n, n);
    expect(grid(flipped.subarray(image.length)).flat()).toEqual(grid(apply('hflip')).flat().map((v) => 255 - v));
  });

  test('ranks are normalised and ties share their mean rank', () => {
    expect(normalisedRanks([0.3, 0.1, 0.3, 0.9])).toEqual([0.625, 0.25, 0.625, 1]);
  });
});

describe('predict on a tiny test set', () => {
  const fixture = tinyTrainedRun();
  const root = fixture.root;
  let data: string, run: TrainRunResult;
  beforeAll(() => ({ data, run } = fixture.made()));

  test('one checkpoint without TTA gives the trainer\'s own probabilities', async () => {
    const out = path.join(root, 'one', 'submission.csv');
    const logged: string[] = [];
    const result = await predict({ checkpoints: [run.runDir], data, out, log: (line) => logged.push(line) });
    expect(result.checkpoints).toEqual([path.join(run.runDir, 'best.safetensors')]);
    // The run trained on 2 of its 3 folds of these very images: the scores are no test result, and it says so.
    const folds = readFileSync(path.join(run.runDir, 'folds.csv'), 'utf8').trim().split('\n').slice(1);
    const trained = folds.filter((row) => row.split(',').at(-1) !== '0').length;
    expect(trained).toBeGreaterThan(0);
    expect(logged.filter((l) => l.startsWith('warning:'))).toEqual([
      expect.stringMatching(
        new RegExp(`^warning: ${trained} of 24 images to predict were training images of the checkpoints \\(e\\.g\\. \\S+, of ${path.join(run.runDir, 'best.safetensors').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\): their scores, and any AUC of them, are optimistic`),
      ),
    ]);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('image_name,target');
    expect(lines).toHaveLength(25);
    const samples = (await openDataset(data)).samples;
    const trainer = await Trainer.load(path.join(run.runDir, 'best.safetensors'));
    try {
      const expected = await trainer.predict(samples);
      expect(result.rows).toEqual(expected.map((p) => ({ imageName: p.imageName, target: p.probability })));
    } finally {
      await trainer.dispose();
    }
    expect(result.auc).toEqual(expect.any(Number)); // the tiny set has targets
    await expect(predict({ checkpoints: [run.runDir], data, out })).rejects.toThrow(`Refusing to overwrite ${out}`);
  });

  test('outputs that cannot both be written are refused before scoring, and nothing is written', async () => {
    const out = path.join(root, 'outputs', 'submission.csv');
    const scored: number[] = [];
    const onProgress = (p: { scored: number }) => scored.push(p.scored);
    await expect(predict({ checkpoints: [run.runDir], data, out, perViewCsv: out, onProgress })).rejects.toThrow(
      new OutputLocationError(`--out and --per-view are both ${out}: give each output a file of its own`, 'EEXIST'),
    );
    if (existsSync('/proc/self'))
      await expect(predict({ checkpoints: [run.runDir], data, out, perViewCsv: '/proc/melanoma-nowhere/views.csv', onProgress })).rejects.toThrow(
        'cannot create the folder /proc/melanoma-nowhere: this file system does not allow new folders there; choose a writable location',
      );
    expect(scored).toEqual([]); // refused before any image was scored
    expect(existsSync(out)).toBe(false);
  });

  test('two checkpoints x 8 views: the per-view CSV holds every score, the submission their means', async () => {
    const out = path.join(root, 'tta', 'submission.csv');
    const perViewCsv = path.join(root, 'tta', 'views.csv');
    const checkpoints = [path.join(run.runDir, 'best.safetensors'), path.join(run.runDir, 'last.safetensors')];
    const result = await predict({ checkpoints, data, out, perViewCsv, tta: 8, ensemble: 'mean' });
    expect(result.views).toEqual([...TTA_VIEWS]);
    const rows = readFileSync(perViewCsv, 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
    expect(rows).toHaveLength(24 * 2 * 8);
    const name = result.rows[0].imageName;
    const mine = rows.filter((r) => r[0] === name).map((r) => Number(r[3]));
    expect(result.rows[0].target).toBeCloseTo(mine.reduce((a, b) => a + b, 0) / mine.length, 12);
    // The views reach the engine: a flipped asymmetric lesion scores differently somewhere.
    const byView = (v: string) => rows.filter((r) => r[1] === checkpoints[0] && r[2] === v).map((r) => r[3]);
    expect(byView('hflip')).not.toEqual(byView('identity'));
    const ranked = await predict({ checkpoints, data, out: path.join(root, 'tta', 'rank.csv'), tta: 2, ensemble: 'rank' });
    expect(Math.max(...ranked.rows.map((r) => r.target))).toBe(1);
  });

  test('progress: every batch of every checkpoint, ending with all images scored', async () => {
    const progress: { checkpoint: number; scored: number; etaSeconds: number }[] = [];
    const checkpoints = [path.join(run.runDir, 'best.safetensors'), path.join(run.runDir, 'last.safetensors')];
    await predict({ checkpoints, data, out: path.join(root, 'progress.csv'), batchSize: 8, onProgress: (p) => progress.push(p) });
    // 24 images in batches of 8, twice.
    expect(progress.map((p) => [p.checkpoint, p.scored])).toEqual([[1, 8], [1, 16], [1, 24], [2, 8], [2, 16], [2, 24]]);
    expect(progress.at(-1)!.etaSeconds).toBe(0);
    expect(progress[0].etaSeconds).toBeGreaterThan(0);
  });

  test('a bare folder of JPEGs, named by file', async () => {
    const folder = path.join(root, 'jpegs');
    mkdirSync(folder);
    for (const [name, colour] of [['ISIC_A', 90], ['ISIC_B', 160]] as const)
      writeFileSync(path.join(folder, `${name}.jpg`), await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: colour, g: 100, b: 80 } } }).jpeg().toBuffer());
    const out = path.join(root, 'jpeg-submission.csv');
    const result = await predict({ checkpoints: [run.runDir], data: folder, out, tta: 4 });
    expect(result.rows.map((r) => r.imageName)).toEqual(['ISIC_A', 'ISIC_B']);
    expect(result.auc).toBeNull();
  });

  test('--scores writes the combined scores with their targets, which evaluate reads as any predictions file', async () => {
    const out = path.join(root, 'scored', 'submission.csv');
    const scoresCsv = path.join(root, 'scored', 'scores.csv');
    const result = await predict({ checkpoints: [run.runDir], data, out, scoresCsv, tta: 2 });
    expect(result.written).toEqual([out, scoresCsv]);
    const rows = readPredictionsCsv(scoresCsv);
    expect(rows.map((r) => [r.imageName, r.score])).toEqual(result.rows.map((r) => [r.imageName, r.target]));
    const samples = (await openDataset(data)).samples;
    expect(rows.map((r) => [r.target, r.patientId])).toEqual(samples.map((s) => [s.target, s.patientId]));
    expect((await evaluatePredictionsFile(scoresCsv)).evaluation.auc.value).toBeCloseTo(result.auc!, 12);
  });

  test('a bare folder with a PNG, or one image as .jpg and .jpeg, is refused before scoring', async () => {
    const jpeg = await sharp({ create: { width: 40, height: 30, channels: 3, background: 'red' } }).jpeg().toBuffer();
    const withPng = path.join(root, 'with-png');
    mkdirSync(withPng);
    writeFileSync(path.join(withPng, 'ISIC_A.jpg'), jpeg);
    writeFileSync(path.join(withPng, 'ISIC_B.png'), await sharp(jpeg).png().toBuffer());
    const out = path.join(root, 'never.csv');
    await expect(predict({ checkpoints: [run.runDir], data: withPng, out })).rejects.toThrow(
      `${withPng} holds 1 image(s) that are not JPEGs (e.g. ISIC_B.png): the engine reads JPEGs, as ISIC's images are; convert them to JPEG (quality 95 keeps the detail), or move them out of the folder`,
    );
    const twice = path.join(root, 'twice');
    mkdirSync(twice);
    for (const name of ['ISIC_A.jpg', 'ISIC_A.jpeg', 'ISIC_B.jpg']) writeFileSync(path.join(twice, name), jpeg);
    await expect(predict({ checkpoints: [run.runDir], data: twice, out })).rejects.toThrow(
      `${twice}: 1 image name(s) appear more than once (ISIC_A at ISIC_A.jpeg and ISIC_A.jpg): each image must appear once; keep one file of each image in the folder`,
    );
    expect(existsSync(out)).toBe(false);
  });

  test('--calibrator: the submission holds the calibrated combined probabilities; refusals come before any inference', async () => {
    const oof = parsePredictionsCsv(syntheticPredictionsCsv({ patients: 300 }));
    const write = (kind: CalibratorKind) => {
      const file = path.join(root, `${kind}.json`);
      writeFileSync(file, JSON.stringify(fitCalibrator(oof, { kind }).calibrator));
      return file;
    };
    const samples = (await openDataset(data)).samples;
    const plain = await predict({ checkpoints: [run.runDir], data, out: path.join(root, 'cal', 'plain.csv') });
    for (const kind of ['platt', 'patient-context'] as const) {
      const file = write(kind);
      const result = await predict({ checkpoints: [run.runDir], data, out: path.join(root, 'cal', `${kind}.csv`), calibrator: file });
      expect(result.calibrator).toBe(file);
      const calibrator = fitCalibrator(oof, { kind }).calibrator;
      const expected = applyCalibrator(calibrator, plain.rows.map((r, i) => ({ logit: logit(r.target, 1e-12), patientId: samples[i].patientId })));
      result.rows.forEach((r, i) => expect(r.target).toBeCloseTo(expected[i], 12));
      expect(result.rows.map((r) => r.target)).not.toEqual(plain.rows.map((r) => r.target));
    }
    // The demo's patients have two images each: patient context differs from a Platt map there.
    const platt = readFileSync(path.join(root, 'cal', 'platt.csv'), 'utf8');
    expect(readFileSync(path.join(root, 'cal', 'patient-context.csv'), 'utf8')).not.toBe(platt);

    const folder = path.join(root, 'bare');
    mkdirSync(folder);
    writeFileSync(path.join(folder, 'ISIC_X.jpg'), await sharp({ create: { width: 32, height: 32, channels: 3, background: '#a08070' } }).jpeg().toBuffer());
    const bareOut = path.join(root, 'cal', 'bare.csv');
    await expect(predict({ checkpoints: [run.runDir], data: folder, out: bareOut, calibrator: write('patient-context') })).rejects.toThrow(
      `The patient-context calibrator needs every image's patient_id, but image 1 (ISIC_X) of ${folder} has none`,
    );
    const checkpoints = [path.join(run.runDir, 'best.safetensors'), path.join(run.runDir, 'last.safetensors')];
    await expect(predict({ checkpoints, data, out: bareOut, ensemble: 'rank', calibrator: write('platt') })).rejects.toThrow(
      'A calibrator needs probabilities, but --ensemble rank combines 2 checkpoints into ranks: use --ensemble mean with --calibrator',
    );
    await expect(predict({ checkpoints: [run.runDir], data, out: bareOut, calibrator: path.join(root, 'none.json') })).rejects.toThrow(/none\.json does not exist: make one with `melanoma calibrate/);
    expect(existsSync(bareOut)).toBe(false);
  });

  test('bad input: one line naming the thing and the fix', async () => {
    await expect(predict({ checkpoints: [path.join(root, 'missing.safetensors')], data, out: path.join(root, 'x.csv') })).rejects.toThrow(
      /^Checkpoint .*missing.safetensors does not exist: pass a .safetensors file, a run folder/,
    );
    await expect(predict({ checkpoints: [run.runDir], data, tta: 9, out: path.join(root, 'x.csv') })).rejects.toThrow('Expected integer between 1 and 8 for tta but received 9');
    expect(existsSync(path.join(root, 'x.csv'))).toBe(false);
  });

  (existsSync(CLI) ? test : test.skip)('the predict command writes the submission and refuses to overwrite it (exit 2)', () => {
    const out = path.join(root, 'cli-submission.csv');
    const args = [CLI, 'predict', run.runDir, '--data', data, '--out', out, '--tta', '2', '--workers', '2', '--log-every', '2'];
    const first = spawnSync(process.execPath, args, { encoding: 'utf8' });
    expect(first.status).toBe(0);
    // Batches of 8 (the checkpoint's): a line after batch 2 and after the last one.
    expect(first.stdout).toMatch(/\ncheckpoint 1\/1: 16\/24 images, [\d.]+ img\/s, eta \d+s\ncheckpoint 1\/1: 24\/24 images, [\d.]+ img\/s, eta 0s\n/);
    expect(first.stdout).toContain(`wrote ${out} (24 images)`);
    const again = spawnSync(process.execPath, args, { encoding: 'utf8' });
    expect(again.status).toBe(2);
    expect(again.stderr.trim()).toBe(`error: Refusing to overwrite ${out}: choose another --out/--per-view/--scores path or move the existing file away`);
  });
});
