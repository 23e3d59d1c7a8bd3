/**
 * Out-of-fold predictions of a fold run, and cross-validation on tiny real data: per-fold
 * folders, the pooled predictions (every image once, with its fold), the summary and report;
 * a CV stopped part-way and resumed gives the same figures as one left alone.
 */
import { readSafetensorsFile } from '../../src/train/safetensors';
import { spawnSync } from 'child_process';
import { existsSync, mkdirSync, promises as fsp, readFileSync, readdirSync, writeFileSync } from 'fs';
import sharp from 'sharp';
import * as path from 'path';
import { readFoldsCsv } from '../../src/folds';
import { rocAuc } from '../../src/metrics/auc';
import { crossValidationSummary } from '../../src/metrics/cv';
import { operatingPointForSensitivity } from '../../src/metrics/operating-points';
import { partialAuc } from '../../src/metrics/partial-auc';
import { readPredictionsCsv } from '../../src/report/predictions-csv';
import { CrossValidateResult, crossValidate } from '../../src/train/cv';
import { openDataset } from '../../src/data/isic';
import { resumableFolderOf, trainFold, trainRun } from '../../src/train/run';
import { Trainer } from '../../src/train/trainer';
import { torchInfo } from '../../src/native';
import { TINY_CLI_FLAGS, TINY_OPTIONS, tempDir, tinyDataset } from './tiny-data';

const CLI = path.resolve(__dirname, '..', '..', 'dist', 'cli.js');

const root = tempDir();
let data: string;
beforeAll(async () => {
  data = await tinyDataset(root, 36);
});

test("a fold run writes its best epoch's predictions and their evaluation report", async () => {
  const result = await trainRun({ ...TINY_OPTIONS, data, folds: 3, fold: 1, epochs: 2, runsDir: path.join(root, 'single') });
  const file = path.join(result.runDir, 'valid_predictions.csv');
  expect(readFileSync(file, 'utf8').split('\n')[0]).toBe('image_name,patient_id,target,score,fold');
  const rows = readPredictionsCsv(file);
  const folds = await readFoldsCsv(path.join(result.runDir, 'folds.csv'));
  expect(rows.map((r) => r.imageName).sort()).toEqual(folds.filter((f) => f.fold === 1).map((f) => f.imageName).sort());
  expect(new Set(rows.map((r) => r.fold))).toEqual(new Set(['1']));
  // The scores are the best epoch's: their AUC is the best validation AUC of the history.
  expect(result.best).not.toBeNull();
  expect(rocAuc(rows.map((r) => r.target), rows.map((r) => r.score))).toBeCloseTo(result.best!.validAuc!, 6);
  // ... and so are the row's clinical figures: pAUC above TPR 0.8, specificity at 95% sensitivity.
  expect(result.best!.validPartialAuc).toBeCloseTo(partialAuc(rows.map((r) => r.target), rows.map((r) => r.score), 0.8), 6);
  expect(result.best!.validSpecificityAt95).toBe(operatingPointForSensitivity(rows.map((r) => r.target), rows.map((r) => r.score), 0.95).specificity);
  const evaluation = JSON.parse(readFileSync(path.join(result.runDir, 'evaluation.json'), 'utf8'));
  expect(evaluation.auc.value).toBeCloseTo(result.best!.validAuc!, 6);
  expect(readFileSync(path.join(result.runDir, 'report.html'), 'utf8')).toContain('<html');
});

test('a validation fold without melanoma still writes its out-of-fold predictions (the latest epoch), and no report', async () => {
  const { samples } = await openDataset(data);
  const trainer = new Trainer({ ...TINY_OPTIONS, epochs: 2 });
  const runDir = path.join(root, 'one-class');
  mkdirSync(runDir);
  const logs: string[] = [];
  try {
    const result = await trainFold(trainer, runDir, { train: samples.slice(0, 24), valid: samples.slice(24).filter((s) => s.target === 0), fold: 3 }, { log: (l) => logs.push(l) });
    expect(result.best).toBeNull();
    expect(result.history.map((r) => r.validAuc)).toEqual([null, null]);
    const rows = readFileSync(path.join(runDir, 'valid_predictions.csv'), 'utf8').trim().split('\n');
    expect(rows.length - 1).toBe(samples.slice(24).filter((s) => s.target === 0).length);
    expect(new Set(rows.slice(1).map((r) => `${r.split(',')[2]}|${r.split(',')[4]}`))).toEqual(new Set(['0|3'])); // target 0, fold 3
    expect(existsSync(path.join(runDir, 'best.safetensors'))).toBe(false);
    expect(existsSync(path.join(runDir, 'evaluation.json'))).toBe(false);
    expect(logs.at(-1)).toMatch(/^no evaluation report: the validation AUC of \d+ image\(s\) is undefined \(/);
  } finally {
    await trainer.dispose();
  }
});

describe('crossValidate', () => {
  let whole: CrossValidateResult;
  beforeAll(async () => {
    whole = await crossValidate({ ...TINY_OPTIONS, data, folds: 3, epochs: 2, runsDir: path.join(root, 'cv') });
  });

  test('trains every fold into its own folder and pools the out-of-fold predictions', async () => {
    expect(whole.stopped).toBe(false);
    expect(path.basename(whole.cvDir)).toMatch(/-efficientnet-b0-cv3$/);
    for (const f of [0, 1, 2]) {
      for (const name of ['config.json', 'history.csv', 'last.safetensors', 'best.safetensors', 'valid_predictions.csv', 'evaluation.json'])
        expect(existsSync(path.join(whole.cvDir, `fold-${f}`, name))).toBe(true);
    }
    const oof = readPredictionsCsv(path.join(whole.cvDir, 'oof_predictions.csv'));
    const assignments = await readFoldsCsv(path.join(whole.cvDir, 'folds.csv'));
    expect(oof).toHaveLength(36);
    expect(new Set(oof.map((r) => r.imageName)).size).toBe(36);
    const foldOf = new Map(assignments.map((a) => [a.imageName, String(a.fold)]));
    for (const r of oof) expect(r.fold).toBe(foldOf.get(r.imageName));
  });

  test('the summary is that of the pooled predictions, with per-fold AUCs equal to each fold\'s best', () => {
    const oof = readPredictionsCsv(path.join(whole.cvDir, 'oof_predictions.csv'));
    const expected = crossValidationSummary(oof);
    const written = JSON.parse(readFileSync(path.join(whole.cvDir, 'cv_summary.json'), 'utf8'));
    expect(written.pooled.auc).toBeCloseTo(expected.pooled.auc, 12);
    expect(written.pooled.delong.ci[0]).toBeLessThan(written.pooled.auc);
    expect(written.meanAuc).toBeCloseTo(expected.meanAuc!, 12);
    expect(whole.summary!.folds.map((f) => f.auc)).toEqual(whole.folds.map((r) => expect.closeTo(r.best!.validAuc!, 6)));
    expect(whole.evaluation!.auc.value).toBeCloseTo(expected.pooled.auc, 12);
    expect(existsSync(path.join(whole.cvDir, 'report.html'))).toBe(true);
  });

  test('stopped during fold 1 and resumed: the same histories and pooled AUC', async () => {
    const controller = new AbortController();
    let folds = 0;
    const stopped = await crossValidate({
      ...TINY_OPTIONS,
      data,
      folds: 3,
      epochs: 2,
      runsDir: path.join(root, 'cv-stopped'),
      signal: controller.signal,
      onFold: () => folds++,
      onBatch: (p) => {
        if (folds === 2 && p.epoch === 2 && p.batch === 1) controller.abort(); // mid-epoch, second fold
      },
    });
    expect(stopped.stopped).toBe(true);
    expect(stopped.summary).toBeNull();
    expect(existsSync(path.join(stopped.cvDir, 'oof_predictions.csv'))).toBe(false);
    const last = await readSafetensorsFile(path.join(stopped.cvDir, 'fold-1', 'last.safetensors'));
    expect(JSON.parse(last.metadata['melanoma.epoch_in_progress'])).toMatchObject({ epoch: 2 }); // resumes inside the epoch
    expect(existsSync(path.join(stopped.cvDir, 'fold-2'))).toBe(false);

    // Fold 0's checkpoint copied over fold 1's by hand: refused, fold 1 left as it was.
    const fold1Last = path.join(stopped.cvDir, 'fold-1', 'last.safetensors');
    const own = await fsp.readFile(fold1Last);
    await fsp.copyFile(path.join(stopped.cvDir, 'fold-0', 'last.safetensors'), fold1Last);
    const swapped = await fsp.readFile(fold1Last);
    await expect(crossValidate({ resume: stopped.cvDir })).rejects.toThrow(`${fold1Last} is not this run's checkpoint: it last trained on another training set than fold 1's`);
    expect((await fsp.readFile(fold1Last)).equals(swapped)).toBe(true);
    // A damaged one: named, with the way to train that fold again.
    await fsp.writeFile(fold1Last, own.subarray(0, 1000));
    await expect(crossValidate({ resume: stopped.cvDir })).rejects.toThrow(
      `. To train fold 1 again from its start, remove ${path.join(stopped.cvDir, 'fold-1')} and run \`melanoma cv --resume ${stopped.cvDir}\` again (the other folds are kept)`,
    );
    await fsp.writeFile(fold1Last, own);

    const resumed = await crossValidate({ resume: stopped.cvDir });
    expect(resumed.cvDir).toBe(stopped.cvDir);
    expect(resumed.stopped).toBe(false);
    expect(resumed.folds.map((r) => r.history.map((h) => h.trainLoss))).toEqual(whole.folds.map((r) => r.history.map((h) => h.trainLoss)));
    expect(resumed.summary!.pooled.auc).toBe(whole.summary!.pooled.auc);
    const history = await fsp.readFile(path.join(stopped.cvDir, 'fold-1', 'history.csv'), 'utf8');
    expect(history.trim().split('\n')).toHaveLength(3); // header + 2 epochs, no duplicate row
  });

  test('bad input fails before anything is written', async () => {
    await expect(crossValidate({ ...TINY_OPTIONS, data, folds: 1 })).rejects.toThrow('Expected integer >= 2 for folds but received 1');
    await expect(crossValidate({ resume: path.join(root, 'nowhere') })).rejects.toThrow(/Cannot resume .*nowhere: no config.json there/);
    await expect(crossValidate({ ...TINY_OPTIONS, data, schedule: 'linear' as never, runsDir: path.join(root, 'bad') })).rejects.toThrow(
      "Expected one of constant, cosine, step, plateau for schedule but received 'linear'",
    );
    expect(existsSync(path.join(root, 'bad'))).toBe(false);
  });
});

(existsSync(CLI) ? describe : describe.skip)('the cv command (dist/cli.js)', () => {
  test('train --fold all cross-validates and prints the summary; a single-fold folder cannot be resumed as cv (exit 2)', () => {
    const runsDir = path.join(root, 'cli-cv');
    const run = spawnSync(process.execPath, [CLI, 'train', '--fold', 'all', '--data', data, '--folds', '2', '--epochs', '1', '--runs-dir', runsDir, ...TINY_CLI_FLAGS], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^fold 0: AUC 0\.\d{4} \(18 images, \d+ melanoma\)$/m);
    expect(run.stdout).toMatch(/^fold AUC mean 0\.\d{4} \+- 0\.\d{4} \(sd over 2 folds\)$/m);
    expect(run.stdout).toMatch(/^pooled out-of-fold AUC 0\.\d{4} 95% CI 0\.\d{4}-[01]\.\d{4} \(DeLong\)$/m);
    const [cvDir] = readdirSync(runsDir);
    expect(cvDir).toMatch(/-cv2$/);
    const fold0 = path.join(runsDir, cvDir, 'fold-0');
    const wrong = spawnSync(process.execPath, [CLI, 'cv', '--resume', fold0], { encoding: 'utf8' });
    expect(wrong.status).toBe(2);
    expect(wrong.stderr.trim()).toBe(`error: ${fold0} is a single-fold run folder: resume it with \`melanoma train --resume ${fold0}\``);
  });

  test('--decode nvjpeg without a GPU: exit 2 before anything is written, naming the fix; an unknown backend is refused', () => {
    const runsDir = path.join(root, 'cli-nvjpeg');
    const cpu = spawnSync(process.execPath, [CLI, 'train', '--data', data, '--decode', 'nvjpeg', '--device', 'cpu', '--runs-dir', runsDir], { encoding: 'utf8' });
    expect(cpu.status).toBe(2);
    expect(cpu.stderr.trim()).toBe("error: Expected decode 'sharp' with device cpu but received 'nvjpeg': nvJPEG decodes on the GPU, so it needs --device cuda");
    expect(existsSync(runsDir)).toBe(false);
    const unknown = spawnSync(process.execPath, [CLI, 'cv', '--data', data, '--decode', 'gpu', '--runs-dir', runsDir], { encoding: 'utf8' });
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toContain("error: option '--decode <backend>' argument 'gpu' is invalid. Allowed choices are sharp, nvjpeg.");
  });

  // Node 20's recursive mkdir never settles under /proc: this once hung until killed.
  (existsSync('/proc/self') ? test : test.skip)('a --runs-dir that cannot be created fails at once, naming the folder, before any training', () => {
    const run = spawnSync(process.execPath, [CLI, 'train', '--data', data, '--epochs', '1', '--runs-dir', '/proc/melanoma-runs', ...TINY_CLI_FLAGS], { encoding: 'utf8', timeout: 120_000 });
    expect(run.signal).toBeNull();
    expect(run.status).toBe(2);
    expect(run.stderr.trim()).toBe('error: cannot create the folder /proc/melanoma-runs: this file system does not allow new folders there; choose a writable location');
    expect(run.stdout).not.toMatch(/^data: /m); // refused before the data were opened
    // A folder that exists but cannot hold new folders, for cv too.
    const cv = spawnSync(process.execPath, [CLI, 'cv', '--data', data, '--epochs', '1', '--runs-dir', '/proc/self', ...TINY_CLI_FLAGS], { encoding: 'utf8', timeout: 120_000 });
    expect(cv.status).toBe(2);
    expect(cv.stderr.trim()).toBe('error: cannot create folders in /proc/self: this file system does not allow new folders there; choose a writable location');
    expect(cv.stdout).not.toMatch(/^data: /m);
  });

  (torchInfo().cudaAvailable ? test.skip : test)('--device cuda where LibTorch sees no GPU: exit 2 before the data are opened or anything is written', () => {
    const runsDir = path.join(root, 'cli-cuda');
    for (const command of ['train', 'cv']) {
      const run = spawnSync(process.execPath, [CLI, command, '--data', data, '--device', 'cuda', '--runs-dir', runsDir], { encoding: 'utf8' });
      expect(run.status).toBe(2);
      expect(run.stderr.trim()).toBe(
        "error: Expected 'cpu' or 'auto' for --device but received 'cuda': this engine's LibTorch sees no CUDA device (torchInfo().cudaAvailable is false); use --device cpu (a run being resumed keeps its device: resume it where a GPU is seen, or score its checkpoints here with predict --device cpu), or build the engine against a CUDA LibTorch (npm run build:engine with Torch_DIR/CMAKE_PREFIX_PATH set)",
      );
      expect(run.stdout).not.toMatch(/^data: /m);
    }
    expect(existsSync(runsDir)).toBe(false);
  });
});

/** A JPEG folder with train.csv: `n` 40x30 images of `n` patients, every third a melanoma. */
async function jpegSet(dir: string, n: number): Promise<{ csv: string; jpeg: (i: number) => string }> {
  const jpeg = (i: number) => path.join(dir, 'train', `ISIC_${9100000 + i}.jpg`);
  mkdirSync(path.join(dir, 'train'), { recursive: true });
  const rows = ['image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target,tfrecord'];
  for (let i = 0; i < n; i++) {
    rows.push(`ISIC_${9100000 + i},IP_${i},female,50.0,torso,nevus,benign,${i % 3 === 0 ? 1 : 0},0`);
    await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: (37 * i) % 256, g: i % 3 === 0 ? 40 : 160, b: 90 } } })
      .jpeg()
      .toFile(jpeg(i));
  }
  writeFileSync(path.join(dir, 'train.csv'), rows.join('\n') + '\n');
  return { csv: path.join(dir, 'train.csv'), jpeg };
}

describe('an undecodable image met during training', () => {
  test('crossValidate: the error keeps its code, and names the CV folder to resume (not the fold folder)', async () => {
    const dir = path.join(root, 'bad-image-cv');
    const { csv, jpeg } = await jpegSet(dir, 18);
    writeFileSync(jpeg(5), 'not a jpeg');
    const err = await crossValidate({ ...TINY_OPTIONS, data: csv, folds: 3, epochs: 1, runsDir: path.join(dir, 'runs') }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ERR_IMAGE_FORMAT', imageName: 'ISIC_9100005' });
    const [cvDir] = readdirSync(path.join(dir, 'runs'));
    expect(resumableFolderOf(err)).toEqual({ kind: 'cv', folder: path.join(dir, 'runs', cvDir) });
    expect(resumableFolderOf(new Error('NaN loss'))).toBeNull(); // only data errors: resume cannot change the options
  });

  (existsSync(CLI) ? test : test.skip)('train (dist/cli.js): exit 1 naming the image and the resume command; fixed, the resumed run finishes', async () => {
    const dir = path.join(root, 'bad-image-train');
    const { csv, jpeg } = await jpegSet(dir, 18);
    const good = readFileSync(jpeg(4));
    writeFileSync(jpeg(4), 'not a jpeg');
    const runsDir = path.join(dir, 'runs');
    const failed = spawnSync(process.execPath, [CLI, 'train', '--data', csv, '--folds', '3', '--epochs', '1', '--runs-dir', runsDir, ...TINY_CLI_FLAGS], { encoding: 'utf8' });
    expect(failed.status).toBe(1);
    const [runName] = readdirSync(runsDir);
    const runDir = path.join(runsDir, runName);
    const lines = failed.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^failed: ISIC_9100004 from .*ISIC_9100004\.jpg is not an image \(first bytes 6e6f7420\), not a JPEG/);
    expect(lines[1]).toBe(`${runDir} is kept (last.safetensors holds its newest checkpoint): once the data are fixed, resume with: melanoma train --resume ${runDir}`);
    expect(existsSync(path.join(runDir, 'last.safetensors'))).toBe(true);

    writeFileSync(jpeg(4), good);
    const resumed = spawnSync(process.execPath, [CLI, 'train', '--resume', runDir], { encoding: 'utf8' });
    expect(resumed.stderr).toBe('');
    expect(resumed.status).toBe(0);
    expect(readFileSync(path.join(runDir, 'history.csv'), 'utf8').trim().split('\n')).toHaveLength(2); // header + the one epoch
  });
});

describe('training data without labels', () => {
  test('train and cv refuse it before a run folder exists, even with --pos-weight (a test set is for predict)', async () => {
    const dir = path.join(root, 'unlabelled');
    const { csv } = await jpegSet(dir, 9);
    const rows = readFileSync(csv, 'utf8').trimEnd().split('\n').map((line) => line.split(',').slice(0, 2).join(','));
    writeFileSync(csv, rows.join('\n') + '\n');
    const runsDir = path.join(dir, 'runs');
    for (const run of [
      () => trainRun({ ...TINY_OPTIONS, data: csv, folds: 3, epochs: 1, posWeight: 1, runsDir }),
      () => crossValidate({ ...TINY_OPTIONS, data: csv, folds: 3, epochs: 1, posWeight: 1, runsDir }),
    ]) {
      const err = await run().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'ERR_DATASET_LABELS' });
      expect((err as Error).message).toMatch(
        /^9 of 9 training images have no target \(0 or 1\), e\.g\. ISIC_91000\d\d, .*: training needs a label for every image\. Is this a test set \(no target column\)\? Score it with melanoma predict/,
      );
    }
    expect(readdirSync(runsDir)).toEqual([]); // no run folder: only the checked (shared) runs folder
    // Through the API too: one unlabelled image among labelled ones.
    const { samples } = await openDataset((await jpegSet(path.join(root, 'unlabelled-api'), 6)).csv);
    const trainer = new Trainer({ ...TINY_OPTIONS, epochs: 1 });
    try {
      await expect(trainer.fit({ train: samples.map((s, i) => (i === 2 ? { ...s, target: null } : s)) })).rejects.toThrow(
        '1 of 6 training images have no target (0 or 1), e.g. ISIC_9100002: training needs a label for every image. Fill in their target, or remove those rows.',
      );
    } finally {
      await trainer.dispose();
    }
  });
});
