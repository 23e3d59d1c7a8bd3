/**
 * benchmarkSteps (the model-side benchmark's engine call) trains exactly as that many trainStep
 * calls on the same batch would: same weights after, same losses, accumulation windows counted.
 */
import { TINY, byName, cpuConfig, randomBatch, trackedEngines } from './helpers';

const create = trackedEngines();

describe('benchmarkSteps', () => {
  test('equals repeated trainStep calls on CPU: weights, optimizer steps and mean loss', async () => {
    const batch = { ...randomBatch(4, 32, 5), lr: 1e-3 };
    const [benched, stepped] = await Promise.all([create({ accumulateSteps: 2 }, 'efficientnet-b0', TINY), create({ accumulateSteps: 2 }, 'efficientnet-b0', TINY)]);
    const result = await benched.benchmarkSteps(batch, 4);
    const losses: number[] = [];
    for (let i = 0; i < 4; i++) losses.push((await stepped.trainStep(batch)).loss);
    expect(result.steps).toBe(4);
    expect(result.optimizerSteps).toBe(2);
    expect(result.seconds).toBeGreaterThan(0);
    expect(result.meanLoss).toBeCloseTo(losses.reduce((a, b) => a + b, 0) / 4, 12);
    const [a, b] = [await benched.exportState(), await stepped.exportState()];
    expect(a.step).toBe(2);
    const bm = byName(b.model);
    for (const tensor of a.model) expect(tensor.data.equals(bm.get(tensor.name)!.data)).toBe(true);
  });

  test('a step count below 1 is refused', async () => {
    const engine = await create();
    await expect(engine.benchmarkSteps({ ...randomBatch(2, 32), lr: 1e-3 }, 0)).rejects.toThrow(/step count >= 1/);
  });
});
