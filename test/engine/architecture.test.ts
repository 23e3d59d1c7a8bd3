/**
 * The engine builds the EfficientNet the spec describes: parameter counts, timm state-dict names
 * and forward shapes, checked against the real addon on CPU.
 */
import { buildModelSpec, countParameters, roundChannels } from '../../src/model/architectures';
import { Engine } from '../../src/native';
import { byName, cpuConfig, f32, randomBatch, trackedEngines } from './helpers';

const create = trackedEngines();

describe('parameter counts', () => {
  test('B0 with one output: 4,008,829 = backbone 4,007,548 + Linear(1280, 1)', async () => {
    const engine = await create({}, 'efficientnet-b0', {});
    expect(engine.info().parameterCount).toBe(4_008_829);
    expect(engine.info().parameterCount).toBe(4_007_548 + 1280 + 1);
    expect(countParameters(buildModelSpec('efficientnet-b0'))).toBe(4_008_829);
  });

  test('B3 with one output: torchvision efficientnet_b3 (12,233,232) - its 1000-class head + Linear(1536, 1)', async () => {
    const expected = 12_233_232 - (1536 * 1000 + 1000) + (1536 + 1);
    expect(expected).toBe(10_697_769);
    const engine = await create({}, 'efficientnet-b3', {});
    expect(engine.info().parameterCount).toBe(expected);
    expect(countParameters(buildModelSpec('efficientnet-b3'))).toBe(expected);
    // B3's head is 1280 * 1.2 = 1536 wide: the classifier weight is [1, 1536].
    const classifier = byName((await engine.exportState()).model).get('classifier.weight')!;
    expect(classifier.shape).toEqual([1, 1536]);
  });

  test.each([
    ['b0 x0.25, 3 stages', 'efficientnet-b0', { widthFactor: 0.25, stageLimit: 3 }],
    ['b0 x0.25, 3 stages, hidden head 32', 'efficientnet-b0', { widthFactor: 0.25, stageLimit: 3, headHidden: 32 }],
    ['b2 x0.3, 4 stages, hidden head 7', 'efficientnet-b2', { widthFactor: 0.3, stageLimit: 4, headHidden: 7 }],
    ['b1 x0.2, all stages', 'efficientnet-b1', { widthFactor: 0.2 }],
  ] as const)('engine count equals countParameters(spec): %s', async (_label, model, architecture) => {
    const engine = await create({}, model, { ...architecture });
    const spec = buildModelSpec(model, { ...architecture });
    expect(engine.info().parameterCount).toBe(countParameters(spec));
    // And the count is the sum over the exported parameter tensors (buffers excluded).
    const state = await engine.exportState();
    const names = new Set(engine.info().parameterNames);
    const summed = state.model.filter((t) => names.has(t.name)).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    expect(summed).toBe(engine.info().parameterCount);
  });

  test('roundChannels follows the EfficientNet rounding (multiple of 8, never below 90%)', () => {
    expect(roundChannels(32, 1.2)).toBe(40); // 38.4 -> 40
    expect(roundChannels(1280, 1.2)).toBe(1536);
    expect(roundChannels(24, 1.1)).toBe(24); // 26.4 -> 24, 24 >= 0.9 * 26.4
    expect(roundChannels(40, 1.4)).toBe(56);
    expect(roundChannels(16, 0.25)).toBe(8); // floor at the divisor
  });
});

describe('state-dict names follow timm', () => {
  test('B0 exportState: timm keys, shapes and dtypes', async () => {
    const engine = await create({}, 'efficientnet-b0', {});
    const state = await engine.exportState();
    const model = byName(state.model);
    const expectTensor = (name: string, dtype: string, shape: number[]) => {
      const t = model.get(name);
      expect(t && { name, dtype: t.dtype, shape: t.shape }).toEqual({ name, dtype, shape });
    };
    expectTensor('conv_stem.weight', 'F32', [32, 3, 3, 3]);
    expectTensor('bn1.weight', 'F32', [32]);
    // Stage 0 is a depthwise-separable block (no expansion): conv_dw, bn1, se, conv_pw, bn2.
    expectTensor('blocks.0.0.conv_dw.weight', 'F32', [32, 1, 3, 3]);
    expectTensor('blocks.0.0.se.conv_reduce.weight', 'F32', [8, 32, 1, 1]);
    expectTensor('blocks.0.0.se.conv_reduce.bias', 'F32', [8]);
    expectTensor('blocks.0.0.se.conv_expand.bias', 'F32', [32]);
    expectTensor('blocks.0.0.conv_pw.weight', 'F32', [16, 32, 1, 1]);
    // Later stages are inverted residuals: conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3.
    expectTensor('blocks.1.0.conv_pw.weight', 'F32', [96, 16, 1, 1]);
    expectTensor('blocks.1.0.conv_dw.weight', 'F32', [96, 1, 3, 3]);
    expectTensor('blocks.1.0.se.conv_reduce.weight', 'F32', [4, 96, 1, 1]); // SE width from the block input (16 * 0.25)
    expectTensor('blocks.1.0.conv_pwl.weight', 'F32', [24, 96, 1, 1]);
    expectTensor('blocks.1.0.bn3.running_mean', 'F32', [24]);
    expectTensor('blocks.1.0.bn1.num_batches_tracked', 'I64', []);
    expectTensor('blocks.6.0.conv_pwl.weight', 'F32', [320, 1152, 1, 1]);
    expectTensor('conv_head.weight', 'F32', [1280, 320, 1, 1]);
    expectTensor('bn2.running_var', 'F32', [1280]);
    expectTensor('classifier.weight', 'F32', [1, 1280]);
    expectTensor('classifier.bias', 'F32', [1]);
    // Stage repeats of B0: 1, 2, 2, 3, 3, 4, 1.
    const blocks = new Set(state.model.map((t) => t.name.match(/^blocks\.(\d+\.\d+)\./)?.[1]).filter(Boolean));
    expect([...blocks].sort()).toEqual(
      ['0.0', '1.0', '1.1', '2.0', '2.1', '3.0', '3.1', '3.2', '4.0', '4.1', '4.2', '5.0', '5.1', '5.2', '5.3', '6.0'].sort(),
    );
    // Nothing named the torchvision or lukemelas way.
    expect(state.model.filter((t) => /features\.|_blocks|_conv_stem|_fc/.test(t.name))).toEqual([]);
    // A fresh BatchNorm: running_var all ones, num_batches_tracked 0.
    expect([...f32(model.get('bn2.running_var')!)].every((v) => v === 1)).toBe(true);
    expect(model.get('bn1.num_batches_tracked')!.data.readBigInt64LE(0)).toBe(0n);
    // Every parameter has both Adam moments, named after it.
    const optimizerNames = new Set(state.optimizer.map((t) => t.name));
    for (const name of engine.info().parameterNames) {
      expect(optimizerNames.has(`exp_avg.${name}`) && optimizerNames.has(`exp_avg_sq.${name}`)).toBe(true);
    }
    expect(state.optimizer).toHaveLength(2 * engine.info().parameterNames.length);
    expect(state.step).toBe(0);
  });

  test('a hidden head layer is named head_fc and feeds the classifier', async () => {
    const engine = await create({}, 'efficientnet-b0', { widthFactor: 0.25, stageLimit: 3, headHidden: 12 });
    const model = byName((await engine.exportState()).model);
    expect(model.get('head_fc.weight')!.shape).toEqual([12, 320]);
    expect(model.get('head_fc.bias')!.shape).toEqual([12]);
    expect(model.get('classifier.weight')!.shape).toEqual([1, 12]);
  });
});

describe('forward shapes at 64 px', () => {
  test.each(['efficientnet-b0', 'efficientnet-b3'] as const)('%s: one finite logit per image', async (name) => {
    const engine = await create({}, name, {});
    for (const batchSize of [1, 3]) {
      const batch = randomBatch(batchSize, 64, batchSize);
      const { logits, lossSum } = await engine.evaluate({ images: batch.images, batchSize, height: 64, width: 64 });
      // (The addon's typed arrays come from its own context under jest: check the tag, not instanceof.)
      expect(Object.prototype.toString.call(logits)).toBe('[object Float32Array]');
      expect(logits.length).toBe(batchSize);
      expect([...logits].every(Number.isFinite)).toBe(true);
      expect(lossSum).toBeNull();
    }
    // With labels the summed, class-weighted loss comes back too (BCE at initialisation is near ln 2 per image).
    const batch = randomBatch(4, 64, 9);
    const { logits, lossSum } = await engine.evaluate(batch);
    expect(logits.length).toBe(4);
    expect(lossSum).not.toBeNull();
    const bce = [...logits].reduce((s, x, i) => s + Math.max(x, 0) - x * batch.labels[i] + Math.log1p(Math.exp(-Math.abs(x))), 0);
    expect(lossSum!).toBeCloseTo(bce, 4);
  });

  test('non-square and odd sizes work (global pooling)', async () => {
    const engine = await create({}, 'efficientnet-b0', { widthFactor: 0.25, stageLimit: 3 });
    const batch = randomBatch(2, 40, 2);
    const images = Buffer.alloc(2 * 37 * 53 * 3, 128);
    const { logits } = await engine.evaluate({ images, batchSize: 2, height: 37, width: 53 });
    expect(logits.length).toBe(2);
    expect(logits[0]).toBe(logits[1]); // identical images, eval mode: identical logits
    expect((await engine.evaluate({ images: batch.images, batchSize: 2, height: 40, width: 40 })).logits.length).toBe(2);
  });

  test('evaluate is deterministic and batch-independent in eval mode', async () => {
    const engine = await create({}, 'efficientnet-b0', { widthFactor: 0.25, stageLimit: 3 });
    const batch = randomBatch(4, 32, 4);
    const all = (await engine.evaluate({ images: batch.images, batchSize: 4, height: 32, width: 32 })).logits;
    const again = (await engine.evaluate({ images: batch.images, batchSize: 4, height: 32, width: 32 })).logits;
    expect([...again]).toEqual([...all]);
    const bytes = 32 * 32 * 3;
    const third = (await engine.evaluate({ images: batch.images.subarray(2 * bytes, 3 * bytes), batchSize: 1, height: 32, width: 32 })).logits;
    expect(third[0]).toBeCloseTo(all[2], 5);
  });
});
