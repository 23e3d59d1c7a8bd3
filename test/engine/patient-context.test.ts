/**
 * Patient context (ModelSpec.contextDim): its parameters, that an image's logit depends on the
 * other images of its patient in the batch and on no one else's, that a batch without groups is
 * one of single images, that bad groups are refused, that the head alone (classifyEmbeddings)
 * scores a patient whose images came through the backbone in several batches as one pass would,
 * and that it learns what only a patient's other image tells.
 */
import { mulberry32 } from '../../src/data/random';
import { rocAuc } from '../../src/metrics/auc';
import { buildModelSpec, countParameters } from '../../src/model/architectures';
import { EngineError } from '../../src/native';
import { TINY, byName, randomBatch, rejection, trackedEngines } from './helpers';
import type { PixelBatch } from './helpers';

const create = trackedEngines();
const WIDTH = 8;
const WITH_CONTEXT = { ...TINY, contextDim: WIDTH };

/** The batch with image `index` replaced by fresh noise. */
function withImageReplaced(batch: PixelBatch, index: number, seed: number): PixelBatch {
  const bytes = batch.height * batch.width * 3;
  const images = Buffer.from(batch.images);
  images.set(randomBatch(1, batch.height, seed).images, index * bytes);
  return { ...batch, images };
}

describe('patient context', () => {
  test('adds query/key/value projections and widens the classifier by their width + 1', async () => {
    const [plain, context] = await Promise.all([create({}, 'efficientnet-b0', TINY), create({}, 'efficientnet-b0', WITH_CONTEXT)]);
    const plainTensors = byName((await plain.exportState()).model);
    const tensors = byName((await context.exportState()).model);
    const pooled = plainTensors.get('classifier.weight')!.shape[1];
    for (const name of ['ctx_query', 'ctx_key', 'ctx_value']) {
      expect(tensors.get(`${name}.weight`)!.shape).toEqual([WIDTH, pooled]);
      expect(tensors.get(`${name}.bias`)!.shape).toEqual([WIDTH]);
    }
    expect(tensors.get('classifier.weight')!.shape[1]).toBe(pooled + WIDTH + 1);
    expect(context.info().parameterCount - plain.info().parameterCount).toBe(3 * (pooled * WIDTH + WIDTH) + WIDTH + 1);
    expect(context.info().parameterCount).toBe(countParameters(buildModelSpec('efficientnet-b0', WITH_CONTEXT)));
  });

  test("an image's logit moves with its patient's other image and with no one else's", async () => {
    const engine = await create({}, 'efficientnet-b0', WITH_CONTEXT);
    const batch = { ...randomBatch(4, 32, 5), groups: Int32Array.of(0, 0, 1, 1) };
    const before = (await engine.evaluate(batch)).logits;
    const after = (await engine.evaluate(withImageReplaced(batch, 1, 77))).logits;
    expect(Math.abs(after[0] - before[0])).toBeGreaterThan(1e-5); // patient 0's other image changed
    expect(after[2]).toBeCloseTo(before[2], 6); // patient 1: untouched
    expect(after[3]).toBeCloseTo(before[3], 6);
  });

  test('a batch without groups scores each image alone, as distinct groups do; shared groups differ', async () => {
    const engine = await create({}, 'efficientnet-b0', WITH_CONTEXT);
    const batch = randomBatch(4, 32, 6);
    const alone = Array.from((await engine.evaluate(batch)).logits);
    const distinct = Array.from((await engine.evaluate({ ...batch, groups: Int32Array.of(5, -1, 9, 7) })).logits);
    const pairs = Array.from((await engine.evaluate({ ...batch, groups: Int32Array.of(3, 3, 4, 4) })).logits);
    distinct.forEach((logit, i) => expect(logit).toBeCloseTo(alone[i], 6));
    expect(pairs.some((logit, i) => Math.abs(logit - alone[i]) > 1e-5)).toBe(true);
  });

  test('a model without patient context ignores groups', async () => {
    const engine = await create({}, 'efficientnet-b0', TINY);
    const batch = randomBatch(4, 32, 7);
    const alone = Array.from((await engine.evaluate(batch)).logits);
    const grouped = Array.from((await engine.evaluate({ ...batch, groups: Int32Array.of(0, 0, 0, 0) })).logits);
    expect(grouped).toEqual(alone);
  });

  test('groups of the wrong length or type are refused with what the batch needs', async () => {
    const engine = await create({}, 'efficientnet-b0', WITH_CONTEXT);
    const batch = randomBatch(4, 32, 8);
    const short = await rejection(engine.trainStep({ ...batch, lr: 1e-3, groups: Int32Array.of(0, 0, 1) }));
    expect(short).toBeInstanceOf(EngineError);
    expect(short.code).toBe('ERR_ENGINE_STATE');
    expect(short.message).toMatch(/'groups' has 3 values for 4 images: give one patient number per image/);
    const typed = await rejection(engine.evaluate({ ...batch, groups: Float32Array.of(0, 0, 1, 1) as unknown as Int32Array }));
    expect(typed.name).toBe('TypeError'); // thrown in the addon's realm, not jest's
    expect(typed.message).toMatch(/'groups' must be an Int32Array/);
    // The engine is still usable after both refusals.
    expect(Number.isFinite((await engine.trainStep({ ...batch, lr: 1e-3, groups: Int32Array.of(0, 0, 1, 1) })).loss)).toBe(true);
  });

  test('Grad-CAM of a batch in context gives the logits scoring gives', async () => {
    const engine = await create({}, 'efficientnet-b0', WITH_CONTEXT);
    const batch = { ...randomBatch(4, 32, 9), groups: Int32Array.of(0, 0, 0, 1) };
    const scored = (await engine.evaluate(batch)).logits;
    const explained = await engine.gradCam(batch);
    Array.from(explained.logits).forEach((logit, i) => expect(logit).toBeCloseTo(scored[i], 5));
    expect(explained.maps.every(Number.isFinite)).toBe(true);
  });

  test("the head alone on evaluate's features gives evaluate's logits and loss, and a patient split over two backbone batches is scored whole", async () => {
    const FEATURES = 3;
    const engine = await create({ posWeight: 2.5 }, 'efficientnet-b0', { ...WITH_CONTEXT, metadataFeatures: FEATURES, metadataHidden: 4 });
    const groups = Int32Array.of(0, 0, 0, 1);
    const metadata = Float32Array.from({ length: 4 * FEATURES }, (_, i) => Math.sin(i));
    const labels = Float32Array.of(1, 0, 0, 1);
    const whole = { ...randomBatch(4, 32, 10), groups, metadata, labels };
    const onePass = await engine.evaluate({ ...whole, embeddings: true });
    const size = onePass.embeddingSize!;
    const headOnly = await engine.classifyEmbeddings({ embeddings: onePass.embeddings!, batchSize: 4, groups, metadata, labels });
    Array.from(headOnly.logits).forEach((logit, i) => expect(logit).toBeCloseTo(onePass.logits[i], 6));
    expect(headOnly.lossSum).toBeCloseTo(onePass.lossSum!, 6);
    expect(headOnly.embeddings).toBeNull();
    // Patient 0 spans two backbone batches of two: each half alone sees only itself...
    const pixels = 32 * 32 * 3;
    const halves = await Promise.all(
      [0, 2].map((start) =>
        engine.evaluate({ images: whole.images.subarray(start * pixels, (start + 2) * pixels), batchSize: 2, height: 32, width: 32, groups: groups.slice(start, start + 2), metadata: metadata.slice(start * FEATURES, (start + 2) * FEATURES), embeddings: true }),
      ),
    );
    const split = [...halves[0].logits, ...halves[1].logits];
    expect(Math.abs(split[2] - onePass.logits[2])).toBeGreaterThan(1e-5);
    // ...but the head over both halves' features sees the whole patient: one pass's logits.
    const joined = new Float32Array(4 * size);
    joined.set(halves[0].embeddings!, 0);
    joined.set(halves[1].embeddings!, 2 * size);
    const rejoined = await engine.classifyEmbeddings({ embeddings: joined, batchSize: 4, groups, metadata });
    Array.from(rejoined.logits).forEach((logit, i) => expect(logit).toBeCloseTo(onePass.logits[i], 5));
    expect(rejoined.lossSum).toBeNull();
  });

  test('features of the wrong size or type, or none, are refused with what the head needs', async () => {
    const engine = await create({}, 'efficientnet-b0', WITH_CONTEXT);
    const { embeddings, embeddingSize } = await engine.evaluate({ ...randomBatch(2, 32, 11), embeddings: true });
    const short = await rejection(engine.classifyEmbeddings({ embeddings: embeddings!.subarray(1), batchSize: 2 }));
    expect(short).toBeInstanceOf(EngineError);
    expect(short.code).toBe('ERR_ENGINE_STATE');
    expect(short.message).toContain(`this model's embeddings have ${embeddingSize} values per image (a Float32Array of ${2 * embeddingSize!} for 2 images) but 'embeddings' has ${2 * embeddingSize! - 1}`);
    const missing = await rejection(engine.classifyEmbeddings({ batchSize: 2 } as unknown as Parameters<typeof engine.classifyEmbeddings>[0]));
    expect(missing.name).toBe('TypeError');
    expect(missing.message).toMatch(/classifyEmbeddings needs 'embeddings', a Float32Array/);
    const typed = await rejection(engine.classifyEmbeddings({ embeddings: new Float64Array(2 * embeddingSize!) as unknown as Float32Array, batchSize: 2 }));
    expect(typed.message).toMatch(/'embeddings' must be a Float32Array/);
    // Still usable.
    expect((await engine.classifyEmbeddings({ embeddings: embeddings!, batchSize: 2 })).logits).toHaveLength(2);
  });

  test("Grad-CAM of part of a patient, the rest given as features: the maps and logits of one pass over the whole patient", async () => {
    const engine = await create({}, 'efficientnet-b0', WITH_CONTEXT);
    const groups = Int32Array.of(0, 0, 0, 1);
    const whole = { ...randomBatch(4, 32, 12), groups };
    const onePass = await engine.gradCam(whole);
    const { embeddings, embeddingSize } = await engine.evaluate({ ...whole, embeddings: true });
    const size = embeddingSize!;
    // Images 0 and 1 explained; image 2 (their patient's third) enters as its features only.
    const pixels = 32 * 32 * 3;
    const part = { images: whole.images.subarray(0, 2 * pixels), batchSize: 2, height: 32, width: 32, groups: groups.slice(0, 2) };
    const withContext = await engine.gradCam({ ...part, context: { embeddings: embeddings!.slice(2 * size, 3 * size), groups: groups.slice(2, 3) } });
    const cells = onePass.height * onePass.width;
    expect(withContext.logits).toHaveLength(2);
    for (let i = 0; i < 2; i++) {
      expect(withContext.logits[i]).toBeCloseTo(onePass.logits[i], 5);
      Array.from(withContext.maps.subarray(i * cells, (i + 1) * cells)).forEach((v, c) => expect(v).toBeCloseTo(onePass.maps[i * cells + c], 5));
    }
    // Without the context the pair sees only each other: another logit.
    const alone = await engine.gradCam(part);
    expect(Math.abs(alone.logits[0] - onePass.logits[0])).toBeGreaterThan(1e-5);
    // Refused: a context without the batch's groups, and a context for a model without the branch.
    const noGroups = await rejection(engine.gradCam({ ...part, groups: undefined, context: { embeddings: embeddings!.slice(2 * size, 3 * size), groups: groups.slice(2, 3) } }));
    expect(noGroups.code).toBe('ERR_ENGINE_STATE');
    expect(noGroups.message).toMatch(/Grad-CAM with a 'context' needs 'groups' for the batch too, numbered as the context's/);
    const wrongSize = await rejection(engine.gradCam({ ...part, context: { embeddings: embeddings!.slice(2 * size, 3 * size - 1), groups: groups.slice(2, 3) } }));
    expect(wrongSize.code).toBe('ERR_ENGINE_STATE');
    expect(wrongSize.message).toContain(`this model's embeddings have ${size} values per image (a Float32Array of ${size} for 1 images) but 'context.embeddings' has ${size - 1}: give what evaluate returned with embeddings: true`);
    // A metadata model's context needs its metadata rows, and is told by the field's name.
    const withMetadata = await create({}, 'efficientnet-b0', { ...WITH_CONTEXT, metadataFeatures: 2, metadataHidden: 4 });
    const metadataFeatures = (await withMetadata.evaluate({ ...part, metadata: new Float32Array(4), embeddings: true })).embeddings!;
    const noMetadata = await rejection(withMetadata.gradCam({ ...part, metadata: new Float32Array(4), context: { embeddings: metadataFeatures.slice(0, size), groups: Int32Array.of(0) } }));
    expect(noMetadata.code).toBe('ERR_ENGINE_STATE');
    expect(noMetadata.message).toContain("this model takes 2 metadata values per image (a Float32Array of 2 for this batch) but 'context.metadata' has 0: give each batch its 'context.metadata'");
    const plain = await create({}, 'efficientnet-b0', TINY);
    const plainFeatures = (await plain.evaluate({ ...part, embeddings: true })).embeddings!;
    const noBranch = await rejection(plain.gradCam({ ...part, context: { embeddings: plainFeatures.slice(0, plainFeatures.length / 2), groups: Int32Array.of(0) } }));
    expect(noBranch.message).toMatch(/this model has no patient context: give Grad-CAM no 'context'/);
  });

  test("learns a label that only the patient's other image carries: AUC near 1 in context, near chance alone", async () => {
    // Patients of two images, each a flat colour with noise; an image is positive when its
    // partner is bright. Its own pixels say nothing of its label.
    const size = 32;
    const pairsBatch = (pairs: number, seed: number) => {
      const random = mulberry32(seed);
      const n = pairs * 2;
      const brightness = Float64Array.from({ length: n }, () => random());
      const images = Buffer.alloc(n * size * size * 3);
      for (let i = 0; i < n; i++)
        for (let p = 0; p < size * size * 3; p++) images[i * size * size * 3 + p] = Math.max(0, Math.min(255, Math.round(brightness[i] * 200 + random() * 55)));
      const labels = Float32Array.from({ length: n }, (_, i) => (brightness[i ^ 1] > 0.5 ? 1 : 0));
      const groups = Int32Array.from({ length: n }, (_, i) => i >> 1);
      return { images, batchSize: n, height: size, width: size, labels, groups };
    };
    const engine = await create({ seed: 4 }, 'efficientnet-b0', WITH_CONTEXT);
    for (let step = 0; step < 150; step++) await engine.trainStep({ ...pairsBatch(4, 100 + step), lr: 3e-3 });
    const test = pairsBatch(16, 999);
    const inContext = (await engine.evaluate(test)).logits;
    const alone = (await engine.evaluate({ ...test, groups: undefined })).logits;
    const labels = Array.from(test.labels);
    expect(rocAuc(labels, Array.from(inContext))).toBeGreaterThan(0.95);
    expect(rocAuc(labels, Array.from(alone))).toBeLessThan(0.8);
  });
});
