/**
 * A Trainer's life from a script's side: use after dispose(), calls that overlap, targets made in
 * code, and a process that exits while a step is running on the engine thread.
 */
import { spawnSync } from 'child_process';
import { existsSync, writeFileSync } from 'fs';
import * as path from 'path';
import { DataError } from '../../src/data/errors';
import type { LesionSample } from '../../src/data/types';
import { Engine, EngineError } from '../../src/native';
import { encodeSafetensors, readSafetensorsFile } from '../../src/train/safetensors';
import { Trainer } from '../../src/train/trainer';
import { TINY_DEMO, TINY_TRAINER, tempDir, tinyDemo } from './helpers';

const root = tempDir('melanoma-lifecycle-');
let samples: LesionSample[];
beforeAll(async () => {
  ({ samples } = await tinyDemo(root));
});

async function rejection(promise: Promise<unknown>): Promise<EngineError> {
  const err = await promise.then(() => new Error('expected a rejection'), (e: unknown) => e);
  expect(err).toBeInstanceOf(EngineError);
  return err as EngineError;
}

test('after dispose() every use is refused: no untrained model is built in its place, no checkpoint written', async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1 });
  await trainer.fit({ train: samples.slice(0, 16) });
  await trainer.dispose();
  await trainer.dispose(); // twice is fine
  const file = path.join(root, 'after-dispose.safetensors');
  for (const use of [() => trainer.predict(samples.slice(16)), () => trainer.save(file), () => trainer.fit({ train: samples.slice(0, 16) }), () => trainer.prepare()]) {
    const err = await rejection(use());
    expect(err.code).toBe('ERR_ENGINE_DISPOSED');
    expect(err.message).toBe('this Trainer was disposed, and its model with it: create a new Trainer, or Trainer.load a checkpoint saved before dispose()');
  }
  expect(existsSync(file)).toBe(false);
});

test('a second fit() while one runs is refused; the first trains once, and calls that overlap share one engine', async () => {
  const created = jest.spyOn(Engine, 'create'); // counts the real engines built
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 2 });
  try {
    const [, predictions] = await Promise.all([trainer.prepare(), trainer.predict(samples.slice(0, 4))]);
    expect(predictions).toHaveLength(4);
    expect(created).toHaveBeenCalledTimes(1);
    const first = trainer.fit({ train: samples.slice(0, 16) });
    const second = await rejection(trainer.fit({ train: samples.slice(0, 16) }));
    expect(second.code).toBe('ERR_ENGINE_STATE');
    expect(second.message).toBe('fit() is already running on this Trainer: await it before calling fit() again');
    const history = await first;
    expect(history.map((e) => e.epoch)).toEqual([1, 2]);
    // A fit after the last epoch trains nothing, and says so.
    const lines: string[] = [];
    trainer.on('log', (line) => lines.push(line));
    expect(await trainer.fit({ train: samples.slice(0, 16) })).toEqual(history);
    expect(lines).toEqual(['no epoch left to train: 2 are done and epochs is 2 (it counts them all; a larger epochs, or train --resume RUN --epochs N, trains further)']);
    // Built before any training set (posWeight 'auto' = 1), the engine is rebuilt once with the set's weight.
    expect(created).toHaveBeenCalledTimes(2);
  } finally {
    created.mockRestore();
    await trainer.dispose();
  }
});

test("a predict that overlaps the first fit (posWeight 'auto') finishes on the untrained model, which is freed after it", async () => {
  const created = jest.spyOn(Engine, 'create'); // counts the real engines built
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1 });
  const fresh = new Trainer({ ...TINY_TRAINER, epochs: 1 });
  try {
    // The predict builds the placeholder engine (weight 1); the fit queued behind it rebuilds it
    // with the training set's weight while the predict is still scoring its 8 batches.
    const [predictions, history] = await Promise.all([trainer.predict(samples), trainer.fit({ train: samples.slice(0, 16) })]);
    expect(history).toHaveLength(1);
    expect(predictions.map((p) => p.imageName)).toEqual(samples.map((s) => s.imageName));
    expect(created).toHaveBeenCalledTimes(2);
    const [placeholder, trained] = await Promise.all(created.mock.results.map((r) => r.value as Promise<Engine>));
    expect(placeholder.disposed).toBe(true);
    expect(trained.disposed).toBe(false);
    // Scored by the untrained model, as when the predict started: a fresh Trainer's scores.
    expect(predictions.map((p) => p.logit)).toEqual((await fresh.predict(samples)).map((p) => p.logit));
  } finally {
    created.mockRestore();
    await trainer.dispose();
    await fresh.dispose();
  }
});

test("dispose() during fit() rejects the fit in the Trainer's words; nothing is trained after it", async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 3 });
  let disposing: Promise<void> | null = null;
  trainer.on('batch', (b) => {
    if (b.batch === 2 && !disposing) disposing = trainer.dispose();
  });
  const err = await rejection(trainer.fit({ train: samples }));
  await disposing;
  expect(err.code).toBe('ERR_ENGINE_DISPOSED');
  expect(err.message).toBe('this Trainer was disposed during fit(), and its model with it: create a new Trainer, or Trainer.load a checkpoint saved before dispose()');
  expect(trainer.completedEpochs).toBe(0);
});

test('after a non-finite loss, neither scores nor a checkpoint come out of the broken model; the checkpoint from before scores again', async () => {
  // lr 10 with weight decay 1 throws the weights far enough that a forward pass overflows.
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 20, lr: 10, weightDecay: 1 });
  const good = path.join(root, 'before-nan.safetensors');
  try {
    await trainer.prepare(samples);
    await trainer.save(good);
    const err = await rejection(trainer.fit({ train: samples }));
    expect(err.code).toBe('ERR_ENGINE_NONFINITE');
    expect(err.message).toMatch(/^training loss is (nan|inf|-inf) after \d+ optimizer steps; this batch was not applied and the weights are unchanged\. Lower the learning rate \(--lr\) or check the input images$/);
    const broken = path.join(root, 'broken.safetensors');
    const refusedSave = await rejection(trainer.save(broken));
    expect(refusedSave.code).toBe('ERR_ENGINE_NONFINITE');
    expect(refusedSave.message).toMatch(
      new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} was not written: the batch that stopped training \\(training loss is .*\\) left non-finite BatchNorm statistics in the model, so it cannot be saved: score a checkpoint saved before it, or train on from one with a lower learning rate`),
    );
    expect(existsSync(broken)).toBe(false);
    const refusedScores = await rejection(trainer.predict(samples.slice(0, 4)));
    expect(refusedScores.message).toMatch(/so it cannot score images: score a checkpoint saved before it, or train on from one with a lower learning rate \(Trainer\.load\(checkpoint, \{ lr \}\)/);
  } finally {
    await trainer.dispose();
  }
  // The way back the message names: the checkpoint from before, scoring finite numbers.
  const restored = await Trainer.load(good, { lr: 1e-3 });
  try {
    expect((await restored.predict(samples.slice(0, 4))).every((p) => Number.isFinite(p.logit))).toBe(true);
  } finally {
    await restored.dispose();
  }
});

test('a model whose weights overflow is refused as a scorer, naming an image and the fix, instead of NaN scores', async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1 });
  const file = path.join(root, 'overflowing.safetensors');
  try {
    await trainer.save(file);
  } finally {
    await trainer.dispose();
  }
  // The classifier's bias an infinity, as weights that overflowed leave it: every logit is one.
  const { tensors, metadata } = await readSafetensorsFile(file);
  const huge = tensors.map((t) => (t.name === 'classifier.bias' ? { ...t, data: Buffer.from(new Float32Array(t.data.length / 4).fill(Infinity).buffer) } : t));
  const overflowing = path.join(root, 'overflowing-edited.safetensors');
  writeFileSync(overflowing, encodeSafetensors(huge, metadata));
  const loaded = await Trainer.load(overflowing);
  try {
    for (const scoring of [() => loaded.predict(samples.slice(0, 4)), () => loaded.gradCam(samples.slice(0, 2))]) {
      const err = await rejection(scoring());
      expect(err.code).toBe('ERR_ENGINE_NONFINITE');
      expect(err.message).toMatch(
        /^the model gives a non-finite score \(Infinity\) for ([24]) of \1 images \(e\.g\. DEMO_\d+\): its weights or BatchNorm statistics overflow, as after training with too high a learning rate\. Score a checkpoint from before it diverged, or train again with a lower --lr$/,
      );
    }
  } finally {
    await loaded.dispose();
  }
});

test('samples a script built wrongly are refused before any work, naming the sample and what it lacks', async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1 });
  try {
    const broken = (change: object) => samples.slice(0, 8).map((s, i) => (i === 3 ? { ...s, ...change } : s)) as unknown as LesionSample[];
    const name = samples[3].imageName;
    const cases: [() => Promise<unknown>, string][] = [
      [() => trainer.fit({ train: broken({ image: undefined }) }), `Expected LesionSample objects for the training images but sample 3 (${name}) has no image: { kind: 'file', path } or { kind: 'memory', bytes } (openDataset fills it in)`],
      [() => trainer.fit({ train: broken({ image: { kind: 'weird' } }) }), `Expected LesionSample objects for the training images but sample 3 (${name}) has an image of kind "weird" without its fields: { kind: 'file', path }, { kind: 'memory', bytes } or a TFRecord span from openDataset`],
      [() => trainer.fit({ train: samples.slice(0, 8), valid: broken({ imageName: 7 }) }), 'Expected LesionSample objects for the validation images but sample 3 has no imageName (a non-empty string)'],
      [() => trainer.predict([...samples.slice(0, 2), null] as unknown as LesionSample[]), 'Expected LesionSample objects for the images to score but sample 2 is null, not a LesionSample object'],
    ];
    for (const [call, message] of cases) await expect(call()).rejects.toThrow(new TypeError(message));
    expect(trainer.completedEpochs).toBe(0);
  } finally {
    await trainer.dispose();
  }
});

test("save() while fit() runs is refused (it would mislabel the epoch); in fit's hooks it is the checkpoint", async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 2 });
  const during = path.join(root, 'during-fit.safetensors');
  const after = path.join(root, 'after-epoch.safetensors');
  try {
    let attempt: Promise<unknown> | null = null;
    trainer.on('batch', (b) => {
      if (b.epoch === 2 && b.batch === 1 && !attempt) attempt = trainer.save(during).catch((e: unknown) => e);
    });
    await trainer.fit({ train: samples.slice(0, 16) }, { afterEpoch: async (record, t) => (record.epoch === 1 ? t.save(after) : undefined) });
    const err = (await (attempt as Promise<unknown> | null)) as EngineError;
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('ERR_ENGINE_STATE');
    expect(err.message).toBe("save() while fit() runs would write weights from the middle of an epoch under the last finished one: save in fit's afterEpoch or withinEpoch hook, or after fit resolves");
    expect(existsSync(during)).toBe(false);
    const loaded = await Trainer.load(after);
    expect(loaded.completedEpochs).toBe(1);
    await loaded.dispose();
  } finally {
    await trainer.dispose();
  }
});

test('a target other than 0 or 1 is refused before training, naming the images', async () => {
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1 });
  try {
    // As a script's own samples may hold them, past the type.
    const train = samples.slice(0, 8).map((s, i) => (i === 2 ? { ...s, target: 2 } : i === 5 ? { ...s, target: '1' } : s)) as unknown as LesionSample[];
    const err = await trainer.fit({ train }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DataError);
    expect((err as DataError).message).toBe(
      `2 of 8 training images have a target other than 0 or 1 (${train[2].imageName}: 2, ${train[5].imageName}: "1"): target is the number 1 for a melanoma and 0 for a benign lesion`,
    );
    expect(trainer.completedEpochs).toBe(0);
  } finally {
    await trainer.dispose();
  }
});

// Node's exit() runs no addon cleanup: a step still running on the engine thread used to crash
// in LibTorch's static destructors (a segfault, exit 139, 3 times out of 3).
test.each([
  ['process.exit(3) from a batch listener', "trainer.on('batch', (b) => { if (b.batch === 2) process.exit(3); });", 3],
  ['an uncaught exception in user code during fit', "trainer.on('batch', (b) => { if (b.batch === 2) setImmediate(() => { throw new Error('user code failed'); }); });", 1],
])('%s ends the process with its own exit code, not a crash', (_name, hook, expected) => {
  const script = `
    const { Trainer, ensureDemoDataset, openDataset } = require(${JSON.stringify(path.resolve('dist/index.js'))});
    (async () => {
      const { samples } = await openDataset(await ensureDemoDataset(${JSON.stringify({ dir: path.join(root, 'demo'), ...TINY_DEMO })}));
      const trainer = new Trainer(${JSON.stringify({ ...TINY_TRAINER, epochs: 3 })});
      ${hook}
      await trainer.fit({ train: samples });
    })();`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
  expect(run.signal).toBeNull();
  expect(run.status).toBe(expected);
});
