/**
 * Checkpoints inside an epoch: a run stopped (or checkpointed) part-way through an epoch and
 * continued from that checkpoint gives the uninterrupted run's losses bit for bit on CPU, with
 * and without gradient accumulation; the run folder and the CLI do the same.
 */
import * as path from 'path';
import type { LesionSample } from '../../src/data/types';
import { readSafetensorsFile } from '../../src/train/safetensors';
import { resumeRun, trainRun } from '../../src/train/run';
import { EpochRecord, FitOptions, Trainer } from '../../src/train/trainer';
import type { TrainerOptions } from '../../src/model/config';
import { TINY_TRAINER, tempDir, tinyDemo } from './helpers';

const root = tempDir('melanoma-within-epoch-');
let samples: LesionSample[];
let dataDir: string;
beforeAll(async () => {
  ({ dir: dataDir, samples } = await tinyDemo(root));
});

/** What must match between runs: everything but the clock. */
const comparable = (r: EpochRecord) => ({ ...r, seconds: 0, trainImagesPerSecond: 0, dataWaitSeconds: 0 });

interface Trace {
  /** epoch -> batch -> loss */
  losses: Map<string, number>;
  history: EpochRecord[];
}

async function train(trainer: Trainer, options: FitOptions = {}): Promise<Trace> {
  const losses = new Map<string, number>();
  const onBatch = (b: { epoch: number; batch: number; loss: number }) => losses.set(`${b.epoch}.${b.batch}`, b.loss);
  trainer.on('batch', onBatch);
  try {
    const history = await trainer.fit({ train: samples.slice(0, 24), valid: samples.slice(24) }, options);
    return { losses, history };
  } finally {
    trainer.off('batch', onBatch);
  }
}

async function uninterrupted(options: TrainerOptions): Promise<Trace> {
  const trainer = new Trainer(options);
  try {
    return await train(trainer);
  } finally {
    await trainer.dispose();
  }
}

/** Stops when batch `stopAt` of epoch 2 is reported, saves, loads and finishes. */
async function stoppedAndResumed(options: TrainerOptions, stopAt: number, file: string) {
  const first = new Trainer(options);
  const controller = new AbortController();
  first.on('batch', (b) => {
    if (b.epoch === 2 && b.batch === stopAt) controller.abort();
  });
  let before: Trace;
  try {
    before = await train(first, { signal: controller.signal });
    expect(first.stopReason).toMatch(/^aborted during epoch 2 after \d of 6 batches$/);
    await first.save(file);
  } finally {
    await first.dispose();
  }
  const second = await Trainer.load(file);
  try {
    const inProgress = second.epochInProgress;
    const after = await train(second);
    return { before, after, inProgress };
  } finally {
    await second.dispose();
  }
}

// 24 training images in batches of 4: 6 batches an epoch.
const options: TrainerOptions = { ...TINY_TRAINER, epochs: 3 };

test('stopped after 4 of 6 batches of epoch 2: the checkpoint continues at batch 5, exactly', async () => {
  const whole = await uninterrupted(options);
  // The stop lands after batch 3 is reported; batch 4 is already in flight and is kept.
  const { before, after, inProgress } = await stoppedAndResumed(options, 3, path.join(root, 'stopped.safetensors'));
  expect(inProgress).toMatchObject({ epoch: 2, batches: 4, step: 10 });
  expect(before.history).toHaveLength(1);
  expect([...after.losses.keys()]).toEqual(['2.5', '2.6', '3.1', '3.2', '3.3', '3.4', '3.5', '3.6']);
  for (const [key, loss] of [...before.losses, ...after.losses]) expect(loss).toBe(whole.losses.get(key));
  // The epoch's mean loss counts the batches before the stop too.
  expect(after.history.map(comparable)).toEqual(whole.history.map(comparable));
});

test('a patient-context model stopped inside an epoch continues with the same patient-grouped batches, exactly', async () => {
  const context = { ...options, patientContext: 8 };
  const whole = await uninterrupted(context);
  const { before, after } = await stoppedAndResumed(context, 3, path.join(root, 'context-stopped.safetensors'));
  expect([...after.losses.keys()]).toEqual(['2.5', '2.6', '3.1', '3.2', '3.3', '3.4', '3.5', '3.6']);
  for (const [key, loss] of [...before.losses, ...after.losses]) expect(loss).toBe(whole.losses.get(key));
  expect(after.history.map(comparable)).toEqual(whole.history.map(comparable));
});

test('a checkpoint inside an epoch refuses to continue with other batches or windows', async () => {
  const file = path.join(root, 'stopped.safetensors'); // from the test above: 4 of 6 batches of epoch 2
  for (const [overrides, message] of [
    [{ batchSize: 2 }, 'This checkpoint stopped after 4 of 6 batches of epoch 2, but this data and batch size make 12 batches an epoch'],
    [{ accumulate: 3 }, 'This checkpoint stopped after 4 batches of epoch 2, which is not a whole number of windows of accumulate 3'],
    [{ seed: 5 }, 'This checkpoint stopped inside epoch 2 of a run with seed 11, whose batch order this seed (5) would change'],
  ] as const) {
    const trainer = await Trainer.load(file, overrides);
    try {
      await expect(train(trainer)).rejects.toThrow(message);
    } finally {
      await trainer.dispose();
    }
  }
  // Other images, as many: the same batch count, so only the training set's fingerprint tells.
  const trainer = await Trainer.load(file);
  try {
    const other = [...samples.slice(8, 24), ...samples.slice(24, 32)];
    const refusal = await trainer.fit({ train: other }).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(RangeError);
    expect((refusal as Error).message).toMatch(
      /^This checkpoint stopped after 4 of 6 batches of epoch 2 of another training set \(its images or targets differ: fingerprint [0-9a-f]{16}, this set's [0-9a-f]{16}\): resume with the data/,
    );
    expect(trainer.completedEpochs).toBe(1);
    // The set it was saved with continues.
    await train(trainer);
    expect(trainer.completedEpochs).toBe(3);
  } finally {
    await trainer.dispose();
  }
});

test('with gradient accumulation the stop waits for the end of the window', async () => {
  const accumulated = { ...options, accumulate: 4 };
  const whole = await uninterrupted(accumulated);
  // Batch 2 reported: the window of batches 1-4 is unfinished, so batches 3 and 4 still train.
  const { after, inProgress } = await stoppedAndResumed(accumulated, 2, path.join(root, 'accumulated.safetensors'));
  expect(inProgress).toMatchObject({ epoch: 2, batches: 4 });
  expect(after.history.map(comparable)).toEqual(whole.history.map(comparable));
});

test('a checkpoint taken inside an epoch neither changes the run nor loses its place', async () => {
  const whole = await uninterrupted(options);
  const file = path.join(root, 'within.safetensors');
  const trainer = new Trainer(options);
  let saves = 0;
  let epoch = 0;
  trainer.on('batch', (b) => (epoch = b.epoch));
  let checkpointed: Trace;
  try {
    checkpointed = await train(trainer, {
      withinEpoch: {
        due: () => epoch === 2 && saves === 0,
        save: async (t) => {
          saves++;
          // Asked first when batch 3 arrives (batch 2 is then in flight and is finished first).
          expect(t.epochInProgress).toMatchObject({ epoch: 2, batches: 2 });
          await t.save(file);
        },
      },
    });
  } finally {
    await trainer.dispose();
  }
  expect(saves).toBe(1);
  expect(checkpointed.history.map(comparable)).toEqual(whole.history.map(comparable));
  const resumed = await Trainer.load(file);
  try {
    expect(resumed.completedEpochs).toBe(1);
    const after = await train(resumed);
    expect([...after.losses.keys()][0]).toBe('2.3');
    expect(after.losses.get('2.3')).toBe(whole.losses.get('2.3'));
    expect(after.history.map(comparable)).toEqual(whole.history.map(comparable));
  } finally {
    await resumed.dispose();
  }
});

test('a run folder: checkpointMinutes writes last.safetensors inside epochs; resume continues from it', async () => {
  const runOptions = { ...options, data: dataDir, folds: 4, runsDir: path.join(root, 'runs') };
  const lines: string[] = [];
  const controller = new AbortController();
  const stopped = await trainRun({
    ...runOptions,
    checkpointMinutes: 1e-9, // every window boundary
    signal: controller.signal,
    log: (line) => lines.push(line),
    onBatch: (b) => {
      if (b.epoch === 2 && b.batch === 2) controller.abort();
    },
  });
  expect(lines.filter((l) => l.startsWith('checkpoint: epoch 1,')).length).toBeGreaterThan(0);
  expect(lines).toContain(`aborted during epoch 2 after 3 of 6 batches: saved ${path.join(stopped.runDir, 'last.safetensors')}; resume continues epoch 2 from batch 4`);
  const last = await readSafetensorsFile(path.join(stopped.runDir, 'last.safetensors'));
  expect(JSON.parse(last.metadata['melanoma.epoch_in_progress'])).toMatchObject({ epoch: 2, batches: 3 });

  const resumedLines: string[] = [];
  const resumed = await resumeRun(stopped.runDir, { log: (line) => resumedLines.push(line), checkpointMinutes: 0 });
  expect(resumedLines[0]).toMatch(/^resuming .* in epoch 2 of 3, after 3 of 6 batches; fold 0/);
  const whole = await trainRun({ ...runOptions, runsDir: path.join(root, 'runs-whole') });
  expect(resumed.history.map(comparable)).toEqual(whole.history.map(comparable));
  await expect(trainRun({ ...runOptions, checkpointMinutes: -1 })).rejects.toThrow('Expected a number >= 0 for checkpointMinutes but received -1');
});
