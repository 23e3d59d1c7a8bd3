/**
 * The metadata branch: its parameters, that logits depend on the metadata, that a model which
 * needs metadata says so when a batch has none, and that it learns what only the metadata tells.
 */
import { METADATA_FEATURES } from '../../src/data/metadata';
import { mulberry32 } from '../../src/data/random';
import { rocAuc } from '../../src/metrics/auc';
import { buildModelSpec, countParameters } from '../../src/model/architectures';
import { EngineError } from '../../src/native';
import { TINY, byName, randomBatch, trackedEngines } from './helpers';

const create = trackedEngines();
const FEATURES = METADATA_FEATURES.length;
const HIDDEN = 16;
const WITH_METADATA = { ...TINY, metadataFeatures: FEATURES, metadataHidden: HIDDEN };

/** Random metadata rows; feature 0 (sex_male) is 1 exactly for the positive labels. */
function metadataFor(labels: Float32Array, seed: number): Float32Array {
  const random = mulberry32(seed);
  const out = new Float32Array(labels.length * FEATURES);
  labels.forEach((label, i) => {
    for (let f = 1; f < FEATURES; f++) out[i * FEATURES + f] = random();
    out[i * FEATURES] = label;
  });
  return out;
}

describe('metadata branch', () => {
  test('adds two Linear layers (meta_fc1, meta_fc2) and widens the classifier by their width', async () => {
    const [plain, fused] = await Promise.all([create({}, 'efficientnet-b0', TINY), create({}, 'efficientnet-b0', WITH_METADATA)]);
    const extra = FEATURES * HIDDEN + HIDDEN + HIDDEN * HIDDEN + HIDDEN + HIDDEN;
    expect(fused.info().parameterCount - plain.info().parameterCount).toBe(extra);
    expect(fused.info().parameterCount).toBe(countParameters(buildModelSpec('efficientnet-b0', WITH_METADATA)));
    const tensors = byName((await fused.exportState()).model);
    expect(tensors.get('meta_fc1.weight')!.shape).toEqual([HIDDEN, FEATURES]);
    expect(tensors.get('meta_fc2.weight')!.shape).toEqual([HIDDEN, HIDDEN]);
    expect(tensors.get('classifier.weight')!.shape[1]).toBe(byName((await plain.exportState()).model).get('classifier.weight')!.shape[1] + HIDDEN);
  });

  test('the same images with other metadata give other logits; the same metadata the same logits', async () => {
    const engine = await create({}, 'efficientnet-b0', WITH_METADATA);
    const batch = randomBatch(4, 32, 2);
    const a = metadataFor(batch.labels, 1);
    const b = metadataFor(batch.labels, 2);
    const [first, again, other] = [await engine.evaluate({ ...batch, metadata: a }), await engine.evaluate({ ...batch, metadata: a }), await engine.evaluate({ ...batch, metadata: b })];
    expect(Array.from(again.logits)).toEqual(Array.from(first.logits));
    expect(Array.from(other.logits)).not.toEqual(Array.from(first.logits));
  });

  test('a batch without (or with the wrong amount of) metadata is refused with what the model needs', async () => {
    const engine = await create({}, 'efficientnet-b0', WITH_METADATA);
    const batch = randomBatch(4, 32, 2);
    for (const request of [{ ...batch, lr: 1e-3 }, { ...batch, lr: 1e-3, metadata: new Float32Array(FEATURES) }]) {
      const err = await engine.trainStep(request).then(() => null, (e: unknown) => e as EngineError);
      expect(err).toBeInstanceOf(EngineError);
      expect(err!.code).toBe('ERR_ENGINE_STATE');
      expect(err!.message).toMatch(new RegExp(`takes ${FEATURES} metadata values per image \\(a Float32Array of ${4 * FEATURES} for this batch\\)`));
      expect(err!.message).toContain(`but 'metadata' has ${request.metadata?.length ?? 0}: give each batch its 'metadata'`);
    }
    expect(Number.isFinite((await engine.trainStep({ ...batch, lr: 1e-3, metadata: metadataFor(batch.labels, 3) })).loss)).toBe(true);
  });

  test('learns a label that only the metadata carries (noise images): held-out AUC near 1', async () => {
    const engine = await create({ seed: 3 }, 'efficientnet-b0', WITH_METADATA);
    for (let step = 0; step < 60; step++) {
      const batch = randomBatch(8, 32, 100 + step);
      const labels = Float32Array.from({ length: 8 }, (_, i) => (i + step) % 2);
      await engine.trainStep({ ...batch, labels, metadata: metadataFor(labels, step), lr: 3e-3 });
    }
    const test = randomBatch(16, 32, 999);
    const labels = Float32Array.from({ length: 16 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0);
    const { logits } = await engine.evaluate({ ...test, metadata: metadataFor(labels, 998) });
    expect(rocAuc(Array.from(labels), Array.from(logits))).toBeGreaterThan(0.95);
  });
});
