/**
 * JPEG batches (decode 'nvjpeg'): the engine takes each image's JPEG file instead of pixels and
 * decodes it on the GPU. On this CPU machine the real addon must refuse them with a clear error,
 * change nothing, and keep working; malformed JPEG batches are refused before the engine thread.
 * (The GPU decode itself is measured by bench/gpu-run.sh on the GPU machine.)
 */
import sharp from 'sharp';
import { Engine, EngineError, torchInfo } from '../../src/native';
import { cpuConfig, randomBatch, rejection, trackedEngines } from './helpers';

const create = trackedEngines();


let jpegs: Buffer[] = [];
beforeAll(async () => {
  jpegs = await Promise.all(
    [0, 1].map((i) => sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 200, g: 80 * i, b: 40 } } }).jpeg().toBuffer()),
  );
});

const jpegBatch = () => ({ jpegs, batchSize: 2, height: 32, width: 32, labels: Float32Array.from([0, 1]) });

const cpuOnly = !torchInfo().compiledWithCuda;
const ON_CPU = 'JPEG batches are decoded on the GPU (nvJPEG) and this engine runs on the CPU: decode on the CPU (--decode sharp), or train on CUDA';

(cpuOnly ? describe : describe.skip)('an engine without a GPU JPEG decoder', () => {
  test('torchInfo says there is no nvJPEG, and the engine names no JPEG backend', async () => {
    expect(torchInfo().nvjpeg).toBe(false);
    expect((await create()).info().jpegBackend).toBeNull();
  });

  test('nvjpeg in the config: Engine.create rejects with ERR_ENGINE_DEVICE, naming the fix', async () => {
    const err = await rejection(Engine.create(cpuConfig({ nvjpeg: true })));
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('ERR_ENGINE_DEVICE');
    expect(err.message).toBe(ON_CPU);
  });

  test('a JPEG batch is refused by train steps, evaluation and previews; nothing changes and the engine keeps working', async () => {
    const engine = await create();
    const before = await engine.exportState();
    for (const call of [
      () => engine.trainStep({ ...jpegBatch(), lr: 1e-3 }),
      () => engine.evaluate(jpegBatch()),
      () => engine.previewAugment(jpegBatch()),
    ]) {
      const err = await rejection(call());
      expect(err).toBeInstanceOf(EngineError);
      expect(err.code).toBe('ERR_ENGINE_DEVICE');
      expect(err.message).toBe(ON_CPU);
    }
    const after = await engine.exportState();
    expect(after.step).toBe(before.step);
    expect(after.model.every((t, i) => t.data.equals(before.model[i].data))).toBe(true);
    const { loss } = await engine.trainStep({ ...randomBatch(2, 32, 5), lr: 1e-3 });
    expect(Number.isFinite(loss)).toBe(true);
  });
});

describe('malformed JPEG batches are rejected before they reach the engine thread', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await create();
  });

  test.each([
    ['jpegs that is not an array', { jpegs: 'buffer' }, 'TypeError', "engine: 'jpegs' must be an array of Buffers"],
    ['one Buffer too few', { jpegs: 'first' }, 'RangeError', "engine: 'jpegs' has 1 Buffers for a batch of 2"],
    ['an empty file', { jpegs: 'empty' }, 'TypeError', "engine: 'jpegs[1]' must be a non-empty Buffer"],
    ['pixels and JPEGs at once', { images: Buffer.alloc(2 * 32 * 32 * 3) }, 'TypeError', "engine: a batch holds 'images' or 'jpegs', not both"],
    ['an unknown fit', { fit: 'stretch' }, 'TypeError', "engine: 'fit' must be 'fill' or 'cover'"],
  ] as [string, Record<string, unknown>, string, string][])('%s', async (_name, change, errorName, message) => {
    const batch: Record<string, unknown> = { ...jpegBatch(), lr: 1e-3, ...change };
    // The files exist only once beforeAll ran: the table names them.
    const files: Record<string, unknown> = { buffer: jpegs[0], first: [jpegs[0]], empty: [jpegs[0], Buffer.alloc(0)] };
    if (typeof change.jpegs === 'string') batch.jpegs = files[change.jpegs];
    const err = await rejection(engine.trainStep(batch as never));
    // (Errors from the addon's own context under jest: compare the name, not instanceof.)
    expect(err.name).toBe(errorName);
    expect(err.message).toBe(message);
    expect((await engine.exportState()).step).toBe(0);
  });
});
