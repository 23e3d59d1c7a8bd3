/**
 * Train steps submitted back to back, without awaiting (as the Trainer keeps one in flight):
 * the engine settles them in order with the same results as awaited steps, a call of another
 * kind sees every step before it, and a failing step rejects alone. On CPU a step completes when
 * it is queued; on CUDA the same submission lets the device run step i+1 while step i is read.
 */
import { EngineError, TrainStepResult } from '../../src/native';
import { byName, randomBatch, trackedEngines } from './helpers';

const create = trackedEngines();

describe('pipelined train steps', () => {
  test('settle in submission order with the results of awaited steps, and exportState sees them all', async () => {
    const batches = [1, 2, 3, 4, 5].map((seed) => ({ ...randomBatch(4, 32, seed), lr: 1e-3 }));
    const [pipelined, awaited] = await Promise.all([create({ accumulateSteps: 2 }), create({ accumulateSteps: 2 })]);
    const order: number[] = [];
    const promises = batches.map((batch, i) => pipelined.trainStep(batch).then((result) => (order.push(i), result)));
    const exported = pipelined.exportState(); // queued behind the five steps
    const results = await Promise.all(promises);
    const expected: TrainStepResult[] = [];
    for (const batch of batches) expected.push(await awaited.trainStep(batch));
    expect(order).toEqual([0, 1, 2, 3, 4]);
    expect(results).toEqual(expected);
    expect(results.map((r) => r.optimizerStepped)).toEqual([false, true, false, true, false]);
    const [state, reference] = [await exported, await awaited.exportState()];
    expect(state.step).toBe(2);
    const referenceTensors = byName(reference.model);
    for (const tensor of state.model) expect(tensor.data.equals(referenceTensors.get(tensor.name)!.data)).toBe(true);
  });

  test('after a non-finite loss every later train step is refused, whenever it was submitted, until a checkpoint is imported', async () => {
    // lr 1e30 throws the weights to ~1e30 in one Adam step; the next forward overflows to NaN.
    const engine = await create();
    const batch = randomBatch(4, 32, 3);
    const checkpoint = await engine.exportState();
    const outcomes = await Promise.allSettled([
      engine.trainStep({ ...batch, lr: 1e-3 }),
      engine.trainStep({ ...batch, lr: 1e30 }),
      engine.trainStep({ ...batch, lr: 1e-3 }),
      engine.trainStep({ ...batch, lr: 1e-3 }),
      engine.evaluate(batch),
    ]);
    // The evaluate too: the failed forward pass left non-finite BatchNorm statistics behind.
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected', 'rejected']);
    expect(((outcomes[4] as PromiseRejectedResult).reason as EngineError).message).toMatch(/left non-finite BatchNorm statistics in the model, so it cannot score images: score a checkpoint saved before it/);
    const [failure, refused] = [2, 3].map((i) => (outcomes[i] as PromiseRejectedResult).reason as EngineError);
    expect(failure).toBeInstanceOf(EngineError);
    expect(failure.code).toBe('ERR_ENGINE_NONFINITE');
    expect(failure.message).toMatch(/after 2 optimizer steps; this batch was not applied/);
    expect(refused.code).toBe('ERR_ENGINE_NONFINITE');
    expect(refused.message).toMatch(/^this batch was not applied: training stopped at an earlier batch \(training loss is .* import a checkpoint \(importState\) to train on$/);
    await expect(engine.benchmarkSteps({ ...batch, lr: 1e-3 }, 1)).rejects.toThrow(/training stopped at an earlier batch/);
    expect((await engine.exportState()).step).toBe(2);
    await engine.importState(checkpoint);
    const resumed = await engine.trainStep({ ...batch, lr: 1e-3 });
    expect(Number.isFinite(resumed.loss)).toBe(true);
    expect(resumed.step).toBe(1);
    expect((await engine.evaluate(batch)).logits.every(Number.isFinite)).toBe(true);
  });
});
