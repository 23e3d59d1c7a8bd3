/**
 * The end of an epoch flushes an unfinished accumulation window: its micro-batch gradients are
 * averaged and applied, so nothing is pending when a checkpoint is written.
 */
import { TINY, byName, f32, randomBatch, relativeDifference, sliceBatch, trackedEngines } from './helpers';

const create = trackedEngines();
// Frozen BatchNorm and no stochastic regularisation: a step depends only on weights and batch.
const FIXED = { ...TINY, dropPathRate: 0, headDropout: 0 };

test('2 micro-batches flushed from a window of 4 step like a window of 2', async () => {
  const batch = randomBatch(4, 32, 9);
  const halves = [sliceBatch(batch, 0, 2), sliceBatch(batch, 2, 4)];
  const longWindow = await create({ accumulateSteps: 4, freezeBatchNorm: true }, 'efficientnet-b0', FIXED);
  const shortWindow = await create({ accumulateSteps: 2, freezeBatchNorm: true }, 'efficientnet-b0', FIXED);
  for (const half of halves) {
    expect((await longWindow.trainStep({ ...half, lr: 1e-3 })).optimizerStepped).toBe(false);
    await shortWindow.trainStep({ ...half, lr: 1e-3 });
  }
  const flushed = await longWindow.flushAccumulation({ lr: 1e-3 });
  expect([flushed.optimizerStepped, flushed.step]).toEqual([true, 1]);
  expect((await longWindow.flushAccumulation({ lr: 1e-3 })).optimizerStepped).toBe(false); // nothing pending

  const [a, b] = [await longWindow.exportState(), await shortWindow.exportState()];
  const reference = byName(b.model);
  for (const t of a.model) {
    if (t.dtype === 'F32') expect(relativeDifference(f32(t), f32(reference.get(t.name)!))).toBeLessThan(1e-5);
  }
});
