/**
 * Model-side training throughput: synthetic uint8 batches, no data loading, so the figure is the
 * engine's ceiling that the data pipeline must then feed. It reports; it never asserts a speed.
 */
import { mixSeed, mulberry32 } from '../data/random';
import { Engine, torchInfo } from '../native';
import { TrainerOptions, engineConfig, resolveOptions } from '../model/config';

export interface ModelBenchmarkOptions extends TrainerOptions {
  /** Timed train steps (after warm-up). */
  steps?: number;
  /** Untimed steps first: cuDNN autotuning, allocator warm-up. */
  warmup?: number;
}

export interface ModelBenchmarkResult {
  benchmark: 'model';
  model: string;
  widthFactor: number;
  batchSize: number;
  imageSize: number;
  accumulate: number;
  device: string;
  precision: string;
  parameterCount: number;
  warmupSteps: number;
  steps: number;
  seconds: number;
  iterationsPerSecond: number;
  imagesPerSecond: number;
  meanLoss: number;
  torchVersion: string;
  cpuThreads: string;
}

export async function runModelBenchmark(options: ModelBenchmarkOptions = {}): Promise<ModelBenchmarkResult> {
  const { steps = 10, warmup = 2, ...trainerOptions } = options;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`Expected integer >= 1 for steps but received ${steps}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`Expected integer >= 0 for warmup but received ${warmup}`);
  const o = resolveOptions(trainerOptions, { cudaAvailable: () => torchInfo().cudaAvailable, cudaGraphs: () => torchInfo().cudaGraphs });
  const engine = await Engine.create(engineConfig(o, 1));
  try {
    const n = o.batchSize;
    const random = mulberry32(mixSeed(o.seed));
    const images = Buffer.alloc(n * o.imageSize * o.imageSize * 3);
    for (let i = 0; i < images.length; i++) images[i] = Math.floor(random() * 256);
    const labels = Float32Array.from({ length: n }, (_, i) => i % 2);
    const request = { images, labels, batchSize: n, height: o.imageSize, width: o.imageSize, lr: o.lr };
    for (let i = 0; i < warmup; i++) await engine.trainStep(request);
    let lossSum = 0;
    const started = performance.now();
    for (let i = 0; i < steps; i++) lossSum += (await engine.trainStep(request)).loss;
    const seconds = (performance.now() - started) / 1000;
    return {
      benchmark: 'model',
      model: o.model,
      widthFactor: o.widthFactor,
      batchSize: n,
      imageSize: o.imageSize,
      accumulate: o.accumulate,
      device: o.device,
      precision: o.precision,
      parameterCount: engine.info().parameterCount,
      warmupSteps: warmup,
      steps,
      seconds,
      iterationsPerSecond: steps / seconds,
      imagesPerSecond: (steps * n) / seconds,
      meanLoss: lossSum / steps,
      torchVersion: torchInfo().torchVersion,
      cpuThreads: process.env.OMP_NUM_THREADS ?? 'default',
    };
  } finally {
    await engine.dispose();
  }
}
