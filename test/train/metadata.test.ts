/**
 * Metadata fusion through the Trainer: fit feeds every batch's metadata, predictions depend on
 * it, a checkpoint brings the branch back, and the CLI flag reaches the model.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import type { LesionSample } from '../../src/data/types';
import { Trainer } from '../../src/train/trainer';
import { TINY_TRAINER, tempDir, tinyDemo } from './helpers';

const root = tempDir('melanoma-metadata-');
let samples: LesionSample[];
let demoDir: string;

beforeAll(async () => {
  ({ dir: demoDir, samples } = await tinyDemo(root));
});

test('fit and predict with metadata; the saved checkpoint loads with its metadata branch and predicts the same', async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1, metadata: true });
  const file = path.join(root, 'fused.safetensors');
  try {
    const [record] = await trainer.fit({ train: samples, valid: samples });
    expect(Number.isFinite(record.trainLoss)).toBe(true);
    expect(trainer.options.metadata).toBe(true);
    const before = await trainer.predict(samples);
    // Other metadata, same images: other scores (the branch is used at prediction time).
    const older = samples.map((s) => ({ ...s, ageApprox: (s.ageApprox ?? 40) + 40, sex: s.sex === '0' ? '1' : '0' }));
    const shifted = await trainer.predict(older);
    expect(shifted.map((p) => p.logit)).not.toEqual(before.map((p) => p.logit));
    await trainer.save(file);
    const loaded = await Trainer.load(file);
    try {
      expect(loaded.options.metadata).toBe(true);
      expect((await loaded.predict(samples)).map((p) => p.logit)).toEqual(before.map((p) => p.logit));
      // The demo TFRecords spell sex and site as codes: CSV-style text is refused, by the
      // trainer and by the checkpoint alike, before anything is scored.
      const spelledAsText = samples.map((s) => ({ ...s, sex: 'female', anatomSite: 'torso' }));
      for (const model of [trainer, loaded]) {
        await expect(model.predict(spelledAsText)).rejects.toThrow(/learned patient metadata \(sex, anatomic site\) from TFRecord integer codes but these samples carry CSV text values/);
      }
    } finally {
      await loaded.dispose();
    }
  } finally {
    await trainer.dispose();
  }
});

test('`train --metadata` builds the fused model (its parameter count includes the branch)', () => {
  const cli = path.resolve(__dirname, '../../dist/cli.js');
  const args = ['train', '--data', demoDir, '--device', 'cpu', '--width-factor', '0.25', '--image-size', '32', '--batch-size', '4', '--epochs', '1', '--folds', '2', '--runs-dir', path.join(root, 'runs'), '--workers', '1'];
  const plain = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const fused = spawnSync(process.execPath, [cli, ...args, '--metadata'], { encoding: 'utf8' });
  expect(plain.status).toBe(0);
  expect(fused.status).toBe(0);
  const count = (out: string) => Number(/, ([\d,]+) parameters/.exec(out)![1].replace(/,/g, ''));
  expect(fused.stdout).toMatch(/x0\.25 width \+ metadata,/);
  expect(count(fused.stdout) - count(plain.stdout)).toBe(13 * 32 + 32 + 32 * 32 + 32 + 32);
});
