/**
 * Failures inside the engine become rejected Promises with typed errors, never crashes, and the
 * engine keeps working after them; a disposed engine says so; the event loop runs during steps.
 */
import { Engine, EngineError, EngineState, NamedTensor, torchInfo } from '../../src/native';
import { TINY, byName, cpuConfig, f32, randomBatch, rejection, trackedEngines } from './helpers';

const create = trackedEngines();


/** The engine still answers: an evaluate on a fresh batch resolves with finite logits. */
async function expectWorking(engine: Engine) {
  const { logits } = await engine.evaluate(randomBatch(2, 32, 99));
  expect(logits.length).toBe(2);
  return logits;
}

function sameTensors(a: readonly NamedTensor[], b: readonly NamedTensor[]): boolean {
  const bm = byName(b);
  return a.length === b.length && a.every((t) => bm.get(t.name)?.data.equals(t.data));
}

describe('state import', () => {
  let engine: Engine;
  let state: EngineState;
  beforeAll(async () => {
    engine = await create();
    await engine.trainStep({ ...randomBatch(4, 32, 1), lr: 1e-3 });
    state = await engine.exportState();
  });

  test('a tensor of the wrong shape: ERR_ENGINE_STATE naming the tensor and both shapes; nothing is imported', async () => {
    const model = state.model.map((t) => {
      if (t.name === 'conv_stem.weight') return { ...t, shape: [4, 3, 3, 3], data: Buffer.alloc(4 * 27 * 4) };
      if (t.name === 'bn1.weight') return { ...t, data: Buffer.alloc(t.data.length) }; // valid, but must not be applied
      return t;
    });
    const err = await rejection(engine.importState({ model }));
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('ERR_ENGINE_STATE');
    // Exactly this tensor, and not also listed as missing.
    expect(err.message).toBe(
      'the weights do not fit this model: shape mismatch: conv_stem.weight (model [8, 3, 3, 3], given [4, 3, 3, 3]); ' +
        'check that the checkpoint was made for the same --model and head settings',
    );
    expect(sameTensors((await engine.exportState()).model, state.model)).toBe(true);
    await expectWorking(engine);
  });

  test('unknown and missing tensors (strict) are listed; non-strict import accepts a subset', async () => {
    const renamed = state.model.map((t) => (t.name === 'classifier.bias' ? { ...t, name: 'fc.bias' } : t));
    const err = await rejection(engine.importState({ model: renamed }));
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('ERR_ENGINE_STATE');
    expect(err.message).toBe(
      'the weights do not fit this model: missing tensors: classifier.bias; unexpected tensors: fc.bias; ' +
        'check that the checkpoint was made for the same --model and head settings',
    );
    // strict = false: a subset is fine (e.g. a backbone without its head).
    const zeroBias = { ...state.model.find((t) => t.name === 'classifier.bias')!, data: Buffer.alloc(4) };
    await engine.importState({ model: [zeroBias] }, false);
    expect(f32(byName((await engine.exportState()).model).get('classifier.bias')!)[0]).toBe(0);
    await engine.importState(state); // back to where it was
    expect(sameTensors((await engine.exportState()).model, state.model)).toBe(true);
  });

  test('byte count that does not fit the shape, unknown dtype, missing optimizer moment', async () => {
    const short = state.model.map((t) => (t.name === 'bn2.running_var' ? { ...t, data: t.data.subarray(4) } : t));
    let err = await rejection(engine.importState({ model: short }));
    expect(err.code).toBe('ERR_ENGINE_STATE');
    expect(err.message).toMatch(/^tensor 'bn2\.running_var' holds \d+ bytes but its shape and F32 dtype need \d+$/);

    const badType = state.model.map((t) => (t.name === 'bn2.weight' ? { ...t, dtype: 'F8' as never } : t));
    err = await rejection(engine.importState({ model: badType }));
    expect(err.code).toBe('ERR_ENGINE_STATE');
    expect(err.message).toBe("tensor 'bn2.weight' has unsupported dtype 'F8'");

    const optimizer = state.optimizer.filter((t) => t.name !== 'exp_avg_sq.conv_head.weight');
    err = await rejection(engine.importState({ ...state, optimizer }));
    expect(err.code).toBe('ERR_ENGINE_STATE');
    expect(err.message).toBe("optimizer state has no tensor 'exp_avg_sq.conv_head.weight'");
    expect(sameTensors((await engine.exportState()).optimizer, state.optimizer)).toBe(true);
    await expectWorking(engine);
  });
});

describe('device and LibTorch errors', () => {
  const cudaAvailable = torchInfo().cudaAvailable;
  test('cudaGraph on a CPU engine: Engine.create rejects with ERR_ENGINE_DEVICE, naming the fix', async () => {
    const err = await rejection(Engine.create(cpuConfig({ cudaGraph: true })));
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('ERR_ENGINE_DEVICE');
    expect(err.message).toMatch(/CUDA graphs .* need --device cuda/);
  });

  test('a CPU engine steps on the host and has no device memory figures', async () => {
    const engine = await create();
    expect(engine.info().stepMode).toBe('host');
    expect(await engine.memoryStats()).toBeNull();
    expect(typeof torchInfo().cudaGraphs).toBe('boolean');
  });

  (cudaAvailable ? test.skip : test)("device 'cuda' on a LibTorch without CUDA: Engine.create rejects with ERR_ENGINE_DEVICE", async () => {
    const err = await rejection(Engine.create(cpuConfig({ device: 'cuda' })));
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('ERR_ENGINE_DEVICE');
    expect(err.message).toContain(`CUDA was requested (--device cuda) but this LibTorch ${torchInfo().torchVersion} build sees no CUDA device`);
    // The process and other engines are unaffected.
    await expectWorking(await create());
  });

  test('an exception while building the model rejects Engine.create (ERR_ENGINE_STD/TORCH) with its message', async () => {
    // A class weight beyond float32 range fails inside torch::full (config.ts caps posWeight at
    // 1e6). LibTorch 1.13 throws a std::runtime_error here, later versions may use c10::Error.
    const err = await rejection(Engine.create(cpuConfig({ posWeight: 1e39 })));
    expect(err).toBeInstanceOf(EngineError);
    expect(['ERR_ENGINE_STD', 'ERR_ENGINE_TORCH']).toContain(err.code);
    expect(err.message).toContain('value cannot be converted to type float without overflow');
    await expectWorking(await create());
  });

  test('a c10::Error inside a call becomes ERR_ENGINE_TORCH without a C++ backtrace', async () => {
    const engine = await create();
    const { model } = await engine.exportState();
    const broken = model.map((t) => (t.name === 'bn1.weight' ? { ...t, shape: [-8] } : t));
    const err = await rejection(engine.importState({ model: broken }));
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('ERR_ENGINE_TORCH');
    expect(err.message).toBe('Trying to create tensor with negative dimension -8: [-8]');
    expect(err.message).not.toMatch(/Exception raised from|frame #/);
    // The smallest legal image still runs (stride-2 layers keep a 1x1 map at 1x1).
    const { logits } = await engine.evaluate({ images: Buffer.alloc(3, 7), batchSize: 1, height: 1, width: 1 });
    expect(logits.length).toBe(1);
    expect(Number.isFinite(logits[0])).toBe(true);
  });
});

describe('malformed batches are rejected before they reach the engine thread', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await create();
  });

  test('images buffer of the wrong length: RangeError', async () => {
    const batch = randomBatch(2, 32, 1);
    const err = await rejection(engine.trainStep({ ...batch, images: batch.images.subarray(1), lr: 1e-3 }));
    // (A RangeError from the addon's own context under jest: compare the name, not instanceof.)
    expect(err.name).toBe('RangeError');
    expect(err.message).toBe("engine: 'images' holds 6143 bytes but batchSize x height x width x 3 = 6144");
    const err2 = await rejection(engine.evaluate({ ...batch, batchSize: 3 }));
    expect(err2.name).toBe('RangeError');
    expect(err2.message).toBe("engine: 'images' holds 6144 bytes but batchSize x height x width x 3 = 9216");
    await expectWorking(engine);
  });

  test('labels of the wrong length or type, no labels for a train step', async () => {
    const batch = randomBatch(2, 32, 1);
    let err = await rejection(engine.trainStep({ ...batch, labels: new Float32Array(3), lr: 1e-3 }));
    expect(err.name).toBe('RangeError');
    expect(err.message).toBe("engine: 'labels' has 3 values for a batch of 2");
    err = await rejection(engine.trainStep({ ...batch, labels: [0, 1] as unknown as Float32Array, lr: 1e-3 }));
    expect(err.name).toBe('TypeError');
    expect(err.message).toBe("engine: 'labels' must be a Float32Array");
    err = await rejection(engine.trainStep({ ...batch, labels: undefined as unknown as Float32Array, lr: 1e-3 }));
    expect(err.name).toBe('TypeError');
    expect(err.message).toBe("engine: a train step needs 'labels'");
    expect((await engine.exportState()).step).toBe(0); // nothing was trained
    await expectWorking(engine);
  });
});

test('a non-finite loss rejects with ERR_ENGINE_NONFINITE and leaves the weights as they were', async () => {
  // lr 1e30 throws the weights to ~1e30 in one Adam step; the next forward overflows to NaN.
  const engine = await create();
  const batch = randomBatch(4, 32, 3);
  expect(Number.isFinite((await engine.trainStep({ ...batch, lr: 1e30 })).loss)).toBe(true);
  const before = await engine.exportState();
  const err = await rejection(engine.trainStep({ ...batch, lr: 1e30 }));
  expect(err).toBeInstanceOf(EngineError);
  expect(err.code).toBe('ERR_ENGINE_NONFINITE');
  expect(err.message).toMatch(/^training loss is (nan|inf|-inf) after 1 optimizer steps; this batch was not applied and the weights are unchanged/);
  const after = await engine.exportState();
  expect(after.step).toBe(1);
  expect(sameTensors(after.optimizer, before.optimizer)).toBe(true);
  // The weights did not move (BatchNorm running statistics of the failed forward aside).
  const parameters = new Set(engine.info().parameterNames);
  expect(sameTensors(after.model.filter((t) => parameters.has(t.name)), before.model.filter((t) => parameters.has(t.name)))).toBe(true);
  // Those statistics did move, to non-finite values: the model would score NaN, so scoring is
  // refused, and its export says it must not become a checkpoint.
  const nonFinite = (t: NamedTensor) => t.dtype === 'F32' && f32(t).some((v) => !Number.isFinite(v));
  expect(after.model.filter((t) => !parameters.has(t.name)).some(nonFinite)).toBe(true);
  const why = /^the batch that stopped training \(training loss is (nan|inf|-inf) after 1 optimizer steps; .*\) left non-finite BatchNorm statistics in the model, so it cannot (score images|be saved): score a checkpoint saved before it, or train on from one with a lower learning rate \(Trainer\.load\(checkpoint, \{ lr \}\), or a new run: train --resume keeps the run's lr\)$/;
  expect(after.unsaveable).toMatch(why);
  expect(after.unsaveable).toContain('cannot be saved');
  const refused = await rejection(engine.evaluate(randomBatch(2, 32, 99)));
  expect(refused.code).toBe('ERR_ENGINE_NONFINITE');
  expect(refused.message).toMatch(why);
  expect(refused.message).toContain('cannot score images');
  // Importing good weights makes it score and train normally again.
  const fresh = await create();
  await engine.importState(await fresh.exportState());
  await expectWorking(engine);
  expect((await engine.exportState()).unsaveable).toBeUndefined();
  const result = await engine.trainStep({ ...batch, lr: 1e-3 });
  expect(Number.isFinite(result.loss)).toBe(true);
  expect(result.step).toBe(1);
});

test('non-finite statistics without a halt (as fp16 leaves them) mark the export unsaveable; finite ones do not', async () => {
  const engine = await create();
  const state = await engine.exportState();
  expect(state.unsaveable).toBeUndefined();
  const model = state.model.map((t) => (t.name === 'bn1.running_mean' ? { ...t, data: Buffer.from(new Float32Array(t.data.length / 4).fill(NaN).buffer) } : t));
  await engine.importState({ ...state, model });
  expect((await engine.exportState()).unsaveable).toBe(
    "the model holds non-finite BatchNorm statistics (as a batch with a non-finite loss leaves them, in fp16 too), so it cannot be saved: score a checkpoint saved before it, or train on from one with a lower learning rate (Trainer.load(checkpoint, { lr }), or a new run: train --resume keeps the run's lr)",
  );
  await engine.importState(state);
  expect((await engine.exportState()).unsaveable).toBeUndefined();
});

describe('dispose', () => {
  test('every later call rejects with ERR_ENGINE_DISPOSED; work queued before dispose still completes', async () => {
    const engine = await create();
    const batch = randomBatch(2, 32, 1);
    const pending = engine.trainStep({ ...batch, lr: 1e-3 });
    const disposing = engine.dispose();
    expect(engine.disposed).toBe(true);
    expect((await pending).step).toBe(1);
    await disposing;
    const calls: [string, () => Promise<unknown>][] = [
      ['trainStep', () => engine.trainStep({ ...batch, lr: 1e-3 })],
      ['evaluate', () => engine.evaluate(batch)],
      ['exportState', () => engine.exportState()],
      ['importState', () => engine.importState({ model: [] })],
      ['dispose', () => engine.dispose()],
    ];
    for (const [name, call] of calls) {
      const err = await rejection(call());
      expect({ name, error: err instanceof EngineError, code: err.code, message: err.message }).toEqual({
        name,
        error: true,
        code: 'ERR_ENGINE_DISPOSED',
        message: 'this engine was disposed: create a new one',
      });
    }
    // Info fixed at creation stays readable.
    expect(engine.info().parameterCount).toBeGreaterThan(0);
  });
});

test('the event loop keeps ticking during a training step', async () => {
  // Full-width B0 at 96 px, batch 4: a step of several hundred ms on a 2-core CPU.
  const engine = await create({}, 'efficientnet-b0', {});
  const batch = { ...randomBatch(4, 96, 5), lr: 1e-3 };
  await engine.trainStep(batch); // warm-up (allocator, thread pool)
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const started = performance.now();
  try {
    await engine.trainStep(batch);
  } finally {
    clearInterval(timer);
  }
  const elapsed = performance.now() - started;
  expect(elapsed).toBeGreaterThanOrEqual(200);
  // A blocked loop would tick 0-1 times; a free one about elapsed / 5 (less under CPU contention).
  expect(ticks).toBeGreaterThanOrEqual(Math.floor((0.3 * elapsed) / 5));
});

test('engines are independent: two engines train concurrently on their own threads', async () => {
  const [a, b] = await Promise.all([create({}, 'efficientnet-b0', TINY), create({}, 'efficientnet-b0', TINY)]);
  const batch = { ...randomBatch(2, 32, 4), lr: 1e-3 };
  const results = await Promise.all([a.trainStep(batch), b.trainStep(batch), a.trainStep(batch), b.trainStep(batch)]);
  expect(results.map((r) => r.step)).toEqual([1, 1, 2, 2]);
  await a.dispose();
  expect((await b.trainStep(batch)).step).toBe(3);
  await expectWorking(b);
});
