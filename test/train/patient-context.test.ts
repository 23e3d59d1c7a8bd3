/**
 * Patient context through the Trainer: fit and predict score each image with its patient's other
 * images, predictions come back in the samples' order, a checkpoint brings the branch back, the
 * option is checked, and the CLI flag reaches the model.
 */
import { spawnSync } from 'child_process';
import { existsSync, mkdirSync } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { predict, viewTransform } from '../../src/predict';
import type { LesionSample } from '../../src/data/types';
import { Trainer } from '../../src/train/trainer';
import { TINY_TRAINER, tempDir, tinyDemo } from './helpers';

const root = tempDir('melanoma-context-');
let samples: LesionSample[];
let demoDir: string;

beforeAll(async () => {
  // The demo data: two images per patient, patients 0, 0, 1, 1, ...
  ({ dir: demoDir, samples } = await tinyDemo(root));
});

const logitsByName = (predictions: readonly { imageName: string; logit: number }[]) => new Map(predictions.map((p) => [p.imageName, p.logit]));

test('fit and predict in context; predictions in the samples order, whatever it is; a checkpoint predicts the same', async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1, patientContext: 8 });
  const logs: string[] = [];
  trainer.on('log', (line: string) => logs.push(line));
  const file = path.join(root, 'context.safetensors');
  try {
    // Patients interleaved (every other sample first), so that scoring must regroup them.
    const interleaved = [...samples.filter((_, i) => i % 2 === 0), ...samples.filter((_, i) => i % 2 === 1)];
    const [record] = await trainer.fit({ train: interleaved, valid: interleaved });
    expect(Number.isFinite(record.trainLoss)).toBe(true);
    expect(logs.some((l) => l.startsWith('patient context:'))).toBe(false);
    const predicted = await trainer.predict(interleaved);
    expect(predicted.map((p) => p.imageName)).toEqual(interleaved.map((s) => s.imageName));
    const reversed = await trainer.predict([...interleaved].reverse());
    expect(reversed.map((p) => p.imageName)).toEqual([...interleaved].reverse().map((s) => s.imageName));
    const byName = logitsByName(predicted);
    for (const p of reversed) expect(p.logit).toBeCloseTo(byName.get(p.imageName)!, 5);
    // Each image its own patient: other scores (the context is used at prediction time).
    const alone = await trainer.predict(interleaved.map((s) => ({ ...s, patientId: `alone-${s.imageName}` })));
    expect(alone.some((p, i) => Math.abs(p.logit - predicted[i].logit) > 1e-5)).toBe(true);
    // Grad-CAM of one image of a patient, within the whole set: explained beside its patient's
    // other image, with the logit scoring gave; alone (no population) it is scored without it.
    const chosen = interleaved[3];
    const [explained] = await trainer.gradCam([chosen], { population: interleaved });
    expect(explained.imageName).toBe(chosen.imageName);
    expect(explained.logit).toBeCloseTo(byName.get(chosen.imageName)!, 5);
    const [withoutPatient] = await trainer.gradCam([chosen]);
    expect(Math.abs(withoutPatient.logit - byName.get(chosen.imageName)!)).toBeGreaterThan(1e-5);
    await trainer.save(file);
    const loaded = await Trainer.load(file);
    try {
      expect(loaded.options.patientContext).toBe(8);
      expect((await loaded.predict(interleaved)).map((p) => p.logit)).toEqual(predicted.map((p) => p.logit));
    } finally {
      await loaded.dispose();
    }
  } finally {
    await trainer.dispose();
  }
});

test('a patient with more images than a batch holds is scored beside all of them: the batch size changes no prediction', async () => {
  // Patients of four images, scored in batches of three: every patient spans two batches. Every
  // fifth image has no patient_id (alone), and patients are interleaved, so scoring regroups them.
  const labelled = samples.map((s, i) => ({ ...s, patientId: i % 5 === 4 ? '' : `quad-${i >> 2}` }));
  const quads = [...labelled.filter((_, i) => i % 2 === 0), ...labelled.filter((_, i) => i % 2 === 1)];
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 3, patientContext: 8 });
  const file = path.join(root, 'quads.safetensors');
  try {
    await trainer.fit({ train: quads });
    await trainer.save(file);
  } finally {
    await trainer.dispose();
  }
  const small = await Trainer.load(file, { batchSize: 3 });
  const large = await Trainer.load(file, { batchSize: 32 });
  try {
    const bySmall = await small.evaluate(quads);
    const byLarge = await large.evaluate(quads);
    expect(bySmall.predictions.map((p) => p.imageName)).toEqual(quads.map((s) => s.imageName));
    // Scored batch by batch, the split patients' logits would move by about 0.06 here (measured).
    const largestChange = (logits: readonly number[]) => Math.max(...logits.map((logit, i) => Math.abs(logit - bySmall.predictions[i].logit)));
    expect(largestChange(byLarge.predictions.map((p) => p.logit))).toBeLessThan(1e-5);
    expect(bySmall.loss!).toBeCloseTo(byLarge.loss!, 6);
    // Grad-CAM runs backbone and head in one pass over its batch, here all 32 images: the same logits.
    expect(largestChange((await large.gradCam(quads)).map((p) => p.logit))).toBeLessThan(1e-5);
    // Grad-CAM in batches of three explains each image beside all of its patient's others, and
    // one image chosen from the set (a batch of its own) too.
    expect(largestChange((await small.gradCam(quads)).map((p) => p.logit))).toBeLessThan(1e-5);
    const [chosen] = await small.gradCam([quads[5]], { population: quads });
    expect(chosen.imageName).toBe(quads[5].imageName);
    expect(chosen.logit).toBeCloseTo(bySmall.predictions[5].logit, 5);
    // Each test-time view has its own whole-patient head: a flipped view agrees across batch sizes too.
    const views = [null, viewTransform('hflip')];
    const [smallViews, largeViews] = await Promise.all([small.evaluateViews(quads, views), large.evaluateViews(quads, views)]);
    expect(largestChange(smallViews[0].predictions.map((p) => p.logit))).toBeLessThan(1e-5);
    const flippedChange = Math.max(...smallViews[1].predictions.map((p, i) => Math.abs(p.logit - largeViews[1].predictions[i].logit)));
    expect(flippedChange).toBeLessThan(1e-5);
    expect(largestChange(smallViews[1].predictions.map((p) => p.logit))).toBeGreaterThan(1e-5); // the flip is another view
    // Embeddings come with the same logits.
    const embedded = await small.embed(quads);
    expect(largestChange(embedded.map((p) => p.logit))).toBeLessThan(1e-5);
    expect(embedded.every((p) => p.embedding?.length === embedded[0].embedding!.length && p.embedding.length > 0)).toBe(true);
  } finally {
    await Promise.all([small.dispose(), large.dispose()]);
  }
});

test('a training set without a patient of several images gets a note that the context sees nothing; `predict` says so too', async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1, patientContext: 4 });
  const logs: string[] = [];
  trainer.on('log', (line: string) => logs.push(line));
  try {
    const single = samples.slice(0, 8).map((s) => ({ ...s, patientId: `own-${s.imageName}` }));
    await trainer.fit({ train: single });
    expect(logs).toContain('patient context: no patient of these 8 images has more than one of them (by patient_id), so each image is trained alone, without context');
    // A bare folder of JPEGs has no patient ids: predict scores each image alone, and says so.
    const checkpoint = path.join(root, 'single.safetensors');
    await trainer.save(checkpoint);
    const bare = path.join(root, 'bare');
    mkdirSync(bare);
    for (const name of ['a', 'b', 'c']) await sharp({ create: { width: 40, height: 40, channels: 3, background: name === 'a' ? '#884422' : '#aa6655' } }).jpeg().toFile(path.join(bare, `${name}.jpg`));
    const lines: string[] = [];
    await predict({ checkpoints: [checkpoint], data: bare, out: path.join(root, 'bare.csv'), log: (line) => lines.push(line) });
    expect(lines).toContain('patient context: no patient of these 3 images has more than one of them (by patient_id), so each image is scored alone, without context');
  } finally {
    await trainer.dispose();
  }
});

test.each([[-1], [1.5], [5000]])('patientContext %p is refused, naming the option and its range', (value) => {
  expect(() => new Trainer({ ...TINY_TRAINER, patientContext: value })).toThrow('Expected integer between 0 and 4096 for patientContext but received ' + String(value));
});

test('patientRunLength: refused without patient context or out of range; it shapes training (runs of 1 train without context) and stays with the checkpoint', async () => {
  expect(() => new Trainer({ ...TINY_TRAINER, patientRunLength: 4 })).toThrow('Expected patientRunLength only with patientContext (it shapes the patient runs of training batches) but received 4 without it');
  expect(() => new Trainer({ ...TINY_TRAINER, patientContext: 8, patientRunLength: 1.5 })).toThrow('Expected integer between 0 and 4096 for patientRunLength but received 1.5');
  const quads = samples.map((s, i) => ({ ...s, patientId: `quad-${i >> 2}` }));
  const trainWith = async (patientRunLength: number) => {
    const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1, patientContext: 8, patientRunLength });
    try {
      const [record] = await trainer.fit({ train: quads });
      const file = path.join(root, `run-length-${patientRunLength}.safetensors`);
      await trainer.save(file);
      const loaded = await Trainer.load(file);
      const kept = loaded.options.patientRunLength;
      await loaded.dispose();
      return { loss: record.trainLoss, kept };
    } finally {
      await trainer.dispose();
    }
  };
  const [alone, pairs, whole] = await Promise.all([trainWith(1), trainWith(2), trainWith(4)]);
  expect(pairs.kept).toBe(2);
  expect(whole.kept).toBe(4);
  // Other runs, other batches: the epoch's losses differ.
  expect(new Set([alone.loss, pairs.loss, whole.loss]).size).toBe(3);
});

test('`train --patient-context` builds the context model (its parameter count includes the branch)', () => {
  const cli = path.resolve(__dirname, '../../dist/cli.js');
  const args = ['train', '--data', demoDir, '--device', 'cpu', '--width-factor', '0.25', '--image-size', '32', '--batch-size', '4', '--epochs', '1', '--folds', '2', '--runs-dir', path.join(root, 'runs'), '--workers', '1'];
  const plain = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const context = spawnSync(process.execPath, [cli, ...args, '--patient-context', '16'], { encoding: 'utf8' });
  expect(plain.status).toBe(0);
  expect(context.status).toBe(0);
  expect(context.stdout).toMatch(/x0\.25 width \+ patient context \(16\),/);
  const count = (out: string) => Number(/, ([\d,]+) parameters/.exec(out)![1].replace(/,/g, ''));
  const pooled = 1280 / 4; // the head's channels at quarter width
  expect(count(context.stdout) - count(plain.stdout)).toBe(3 * (pooled * 16 + 16) + 16 + 1);
  const refused = spawnSync(process.execPath, [cli, ...args, '--patient-context', 'wide'], { encoding: 'utf8' });
  expect(refused.status).toBe(2);
  expect(refused.stderr).toContain("expected an integer >= 0 for --patient-context but received 'wide'");
  const tooWide = spawnSync(process.execPath, [cli, ...args, '--patient-context', '5000', '--runs-dir', path.join(root, 'refused-runs')], { encoding: 'utf8' });
  expect(tooWide.status).toBe(2);
  expect(tooWide.stderr).toContain('Expected integer between 0 and 4096 for --patient-context but received 5000');
  expect(existsSync(path.join(root, 'refused-runs'))).toBe(false); // refused before anything is written
  const runsWithoutContext = spawnSync(process.execPath, [cli, ...args, '--patient-run-length', '4', '--runs-dir', path.join(root, 'refused-runs')], { encoding: 'utf8' });
  expect(runsWithoutContext.status).toBe(2);
  expect(runsWithoutContext.stderr).toContain('Expected patientRunLength only with patientContext');
  expect(existsSync(path.join(root, 'refused-runs'))).toBe(false);
});
