/** Shared helpers of the engine tests: tiny configs, seeded batches, state lookups. */
import { mkdtempSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mulberry32 } from '../../src/data/random';
import { ArchitectureOptions, ModelName, buildModelSpec } from '../../src/model/architectures';
import { AUGMENT_PRESETS } from '../../src/model/config';
import { Engine } from '../../src/native';
import type { EngineConfig, EngineState, ImageBatch, NamedTensor } from '../../src/native';

/** A tiny EfficientNet-B0 (quarter width, first 3 stages): ~10k parameters, milliseconds per step at 32-64 px. */
export const TINY: ArchitectureOptions = { widthFactor: 0.25, stageLimit: 3 };

/** A complete CPU fp32 EngineConfig, as engineConfig() would produce it, with overrides. */
export function cpuConfig(
  overrides: Partial<Omit<EngineConfig, 'model'>> = {},
  model: ModelName = 'efficientnet-b0',
  architecture: ArchitectureOptions = TINY,
): EngineConfig {
  return {
    model: buildModelSpec(model, architecture),
    device: 'cpu',
    precision: 'fp32',
    seed: 7,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
    posWeight: 1,
    labelSmoothing: 0,
    accumulateSteps: 1,
    freezeBatchNorm: false,
    channelsLast: false,
    cudaGraph: false,
    augment: AUGMENT_PRESETS.none,
    ...overrides,
  };
}

/** A batch of host pixels (not JPEGs) with labels. */
export type PixelBatch = ImageBatch & { images: Buffer; labels: Float32Array };

/** Deterministic uint8 HWC noise images with alternating 0/1 labels (seeded, so every run sees the same bytes). */
export function randomBatch(batchSize: number, size: number, seed = 1): PixelBatch {
  const random = mulberry32(seed);
  const images = Buffer.alloc(batchSize * size * size * 3);
  for (let i = 0; i < images.length; i++) images[i] = Math.floor(random() * 256);
  const labels = Float32Array.from({ length: batchSize }, (_, i) => i % 2);
  return { images, batchSize, height: size, width: size, labels };
}

/** Images [from, to) of a batch as a batch of their own (micro-batches of one larger batch). */
export function sliceBatch(batch: PixelBatch, from: number, to: number): PixelBatch {
  const bytesPerImage = batch.height * batch.width * 3;
  return {
    images: Buffer.from(batch.images.subarray(from * bytesPerImage, to * bytesPerImage)),
    batchSize: to - from,
    height: batch.height,
    width: batch.width,
    labels: batch.labels.slice(from, to),
  };
}

export function byName(tensors: readonly NamedTensor[]): Map<string, NamedTensor> {
  return new Map(tensors.map((t) => [t.name, t]));
}

/** The values of an F32 tensor (a copy, so the Buffer's alignment does not matter). */
export function f32(t: NamedTensor): Float32Array {
  if (t.dtype !== 'F32') throw new Error(`${t.name} is ${t.dtype}, not F32`);
  const copy = new Uint8Array(t.data);
  return new Float32Array(copy.buffer, 0, copy.length / 4);
}

/** ||a - b|| / ||b|| (0 when both are zero). */
export function relativeDifference(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return norm === 0 ? Math.sqrt(diff) : Math.sqrt(diff / norm);
}

/** The names of the trainable parameters in a state (buffers excluded): those with an optimizer moment. */
export function parameterNames(state: EngineState): string[] {
  return state.optimizer.filter((t) => t.name.startsWith('exp_avg.')).map((t) => t.name.slice('exp_avg.'.length));
}

/** A fresh temporary folder, removed after the test file. */
export function tempDir(prefix = 'melanoma-engine-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A factory of CPU engines (cpuConfig's arguments) that disposes them all after the test file. */
export function trackedEngines(): (...args: Parameters<typeof cpuConfig>) => Promise<Engine> {
  const created: Engine[] = [];
  afterAll(async () => {
    for (const engine of created) if (!engine.disposed) await engine.dispose();
  });
  return async (...args) => {
    const engine = await Engine.create(cpuConfig(...args));
    created.push(engine);
    return engine;
  };
}

/** The rejection of `promise` (fails the test when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection but the promise resolved');
}
