/**
 * Fine-tuning controls of the engine: a frozen backbone (no updates, BatchNorm statistics kept)
 * and a backbone learning rate apart from the head's, with Adam steps counted per group.
 */
import type { EngineState } from '../../src/native';
import { resolveOptions } from '../../src/model/config';
import { TINY, byName, f32, randomBatch, trackedEngines } from './helpers';

const create = trackedEngines();
const DETERMINISTIC = { ...TINY, dropPathRate: 0, headDropout: 0 };
const isHead = (name: string) => name.startsWith('classifier.') || name.startsWith('head_fc.');

/** Largest |after - before| over the model tensors selected by `select`. */
function maxChange(before: EngineState, after: EngineState, select: (name: string) => boolean): number {
  const old = byName(before.model);
  let largest = 0;
  for (const t of after.model) {
    if (!select(t.name) || t.dtype !== 'F32') continue;
    const a = f32(t);
    const b = f32(old.get(t.name)!);
    for (let i = 0; i < a.length; i++) largest = Math.max(largest, Math.abs(a[i] - b[i]));
  }
  return largest;
}

describe('fine-tuning controls', () => {
  const batch = randomBatch(4, 32, 3);

  test('a frozen backbone keeps its weights and BatchNorm statistics while the head trains', async () => {
    const engine = await create({}, 'efficientnet-b0', DETERMINISTIC);
    const before = await engine.exportState();
    for (let i = 0; i < 3; i++) await engine.trainStep({ ...batch, lr: 1e-2, freezeBackbone: true });
    const after = await engine.exportState();
    expect(maxChange(before, after, (n) => !isHead(n))).toBe(0); // weights and running stats alike
    expect(maxChange(before, after, isHead)).toBeGreaterThan(1e-3);
    expect([after.step, after.backboneStep]).toEqual([3, 0]);
  });

  test('unfreezing starts the backbone with its own Adam step count (first update about lr)', async () => {
    const engine = await create({}, 'efficientnet-b0', DETERMINISTIC);
    const lr = 1e-3;
    for (let i = 0; i < 20; i++) await engine.trainStep({ ...batch, lr, freezeBackbone: true });
    const before = await engine.exportState();
    await engine.trainStep({ ...batch, lr, freezeBackbone: false });
    const after = await engine.exportState();
    expect([after.step, after.backboneStep]).toEqual([21, 1]);
    // Adam's first bias-corrected step moves each weight by about lr * sign(gradient). With the
    // head's 21 steps for its bias correction the move would be about half that.
    const conv = (n: string) => n === 'conv_stem.weight';
    expect(maxChange(before, after, conv)).toBeGreaterThan(0.95 * lr);
    expect(maxChange(before, after, conv)).toBeLessThan(1.05 * lr);
  });

  test('backboneLr 0 leaves the backbone weights in place and still trains the head', async () => {
    const engine = await create({}, 'efficientnet-b0', { ...DETERMINISTIC });
    const before = await engine.exportState();
    await engine.trainStep({ ...batch, lr: 1e-2, backboneLr: 0 });
    const after = await engine.exportState();
    const backboneWeights = (n: string) => !isHead(n) && !n.includes('running_') && !n.endsWith('num_batches_tracked');
    expect(maxChange(before, after, backboneWeights)).toBe(0);
    expect(maxChange(before, after, isHead)).toBeGreaterThan(1e-3);
    expect(after.backboneStep).toBe(1);
  });

  test('the backbone step count survives an export/import round trip', async () => {
    const engine = await create({}, 'efficientnet-b0', DETERMINISTIC);
    await engine.trainStep({ ...batch, lr: 1e-3, freezeBackbone: true });
    await engine.trainStep({ ...batch, lr: 1e-3 });
    const state = await engine.exportState();
    const copy = await create({}, 'efficientnet-b0', DETERMINISTIC);
    await copy.importState(state);
    const again = await copy.exportState();
    expect([again.step, again.backboneStep]).toEqual([2, 1]);
    const next = await engine.trainStep({ ...batch, lr: 1e-3 });
    const nextCopy = await copy.trainStep({ ...batch, lr: 1e-3 });
    expect(nextCopy.loss).toBe(next.loss);
  });

  test('options: freezeBackboneEpochs within the epochs, backboneLrFactor in [0, 1]', () => {
    const resolve = (o: object) => resolveOptions({ device: 'cpu', epochs: 3, ...o }, { cudaAvailable: () => false });
    expect(resolve({ freezeBackboneEpochs: 2, backboneLrFactor: 0.1 })).toMatchObject({ freezeBackboneEpochs: 2, backboneLrFactor: 0.1 });
    expect(() => resolve({ freezeBackboneEpochs: 4 })).toThrow('Expected integer between 0 and 3 for freezeBackboneEpochs but received 4 of type number');
    expect(() => resolve({ backboneLrFactor: 2 })).toThrow('Expected number in [0, 1] for backboneLrFactor but received 2 of type number');
  });
});
