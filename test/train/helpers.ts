/** Shared helpers of the training tests: a tiny generated demo set in a temporary folder. */
import { mkdtempSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ensureDemoDataset } from '../../src/data/demo';
import { openDataset } from '../../src/data/isic';
import type { LesionSample } from '../../src/data/types';
import type { TrainerOptions } from '../../src/model/config';

/**
 * A fresh temporary folder, removed after the test file. MELANOMA_CACHE points into it, so
 * nothing under test touches the user's demo cache.
 */
export function tempDir(prefix = 'melanoma-train-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  const previousCache = process.env.MELANOMA_CACHE;
  process.env.MELANOMA_CACHE = path.join(dir, 'cache');
  afterAll(() => {
    if (previousCache === undefined) delete process.env.MELANOMA_CACHE;
    else process.env.MELANOMA_CACHE = previousCache;
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** 32 synthetic lesions (8 melanomas) at 48 px in 2 TFRecord files: generated in well under a second. */
/** The demo set of tinyDemo: 32 images of 48 px in 2 files. */
export const TINY_DEMO = { images: 32, files: 2, size: 48 };

export async function tinyDemo(root: string): Promise<{ dir: string; samples: LesionSample[] }> {
  const dir = await ensureDemoDataset({ dir: path.join(root, 'demo'), ...TINY_DEMO });
  return { dir, samples: (await openDataset(dir)).samples };
}

/** A tiny CPU model: quarter-width B0 with 3 stages at 32 px, batches of 4; seconds per epoch. */
export const TINY_TRAINER: TrainerOptions = {
  model: 'efficientnet-b0',
  widthFactor: 0.25,
  stageLimit: 3,
  imageSize: 32,
  batchSize: 4,
  lr: 2e-3,
  device: 'cpu',
  workers: 1,
  seed: 11,
};
