/** Tiny real data and models for the training-workflow tests (schedules, cv, resume, predict). */
import { mkdtempSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ensureDemoDataset } from '../../src/data/demo';
import type { TrainerOptions } from '../../src/model/config';
import { TrainRunResult, trainRun } from '../../src/train/run';

/** A fresh temporary folder, removed after the test file. */
export function tempDir(prefix = 'melanoma-workflow-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A SIIM-ISIC-format TFRecord set of `images` synthetic 32 px lesions (2 files), made in `dir`. */
export function tinyDataset(dir: string, images = 48): Promise<string> {
  return ensureDemoDataset({ dir: path.join(dir, 'tiny-data'), images, files: 2, size: 32, seed: 7 });
}

/** A small, deterministic network on CPU: a few steps take well under a second. */
export const TINY_OPTIONS: TrainerOptions = {
  model: 'efficientnet-b0',
  widthFactor: 0.25,
  stageLimit: 3,
  imageSize: 32,
  batchSize: 8,
  lr: 1e-3,
  device: 'cpu',
  workers: 2,
};

/** The same tiny network through CLI flags (the CLI has no --stage-limit: the full depth, still small at 32 px). */
export const TINY_CLI_FLAGS = ['--image-size', '32', '--width-factor', '0.25', '--batch-size', '8', '--device', 'cpu', '--workers', '2'];

/**
 * A fresh folder with a 24-image tiny set and one trained run (3 folds, 1 epoch), made before the
 * file's tests: the fixture of the tests that score, embed or explain a saved model.
 */
export function tinyTrainedRun(): { root: string; made: () => { data: string; run: TrainRunResult } } {
  const root = tempDir();
  let made: { data: string; run: TrainRunResult } | null = null;
  beforeAll(async () => {
    const data = await tinyDataset(root, 24);
    made = { data, run: await trainRun({ ...TINY_OPTIONS, data, folds: 3, epochs: 1, runsDir: path.join(root, 'runs') }) };
  });
  return { root, made: () => made! };
}
