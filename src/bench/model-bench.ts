/**
 * Model-side training throughput: synthetic uint8 batches, no data loading, so the figure is the
 * engine's ceiling that the data pipeline must then feed. It reports; it never asserts a speed.
 * One JSON line per configuration, in the schema bench/python_baseline.py also writes, so
 * src/bench/compare.ts can put the two side by side.
 */
import { mixSeed, mulberry32 } from '../data/random';
import { Engine, EngineError, StepMode, torchInfo } from '../native';
import { ModelName } from '../model/architectures';
import { ENGINE_PROBE, Precision, TrainerOptions, engineConfig, resolveOptions } from '../model/config';

export interface ModelBenchmarkOptions extends TrainerOptions {
  /** Timed train steps (after warm-up). */
  steps?: number;
  /** Untimed steps first: cuDNN autotuning, CUDA graph capture, allocator warm-up. */
  warmup?: number;
}

/** What identifies a configuration (src/bench/compare.ts joins Python's rows on it). */
export interface ModelBenchmarkKey {
  benchmark: 'model';
  implementation: 'native';
  model: string;
  widthFactor: number;
  batchSize: number;
  imageSize: number;
  device: string;
  precision: string;
  cudaGraph: boolean;
}

export interface ModelBenchmarkResult extends ModelBenchmarkKey {
  accumulate: number;
  channelsLast: boolean;
  stepMode: StepMode;
  parameterCount: number;
  warmupSteps: number;
  steps: number;
  seconds: number;
  iterationsPerSecond: number;
  imagesPerSecond: number;
  /** Peak device memory of the whole run (model, optimizer, warm-up, graphs); null on CPU. */
  peakMemoryBytes: number | null;
  meanLoss: number;
  torchVersion: string;
  cpuThreads: string;
}

/** A configuration that could not run (out of memory, say): the sweep goes on. */
export interface ModelBenchmarkFailure extends ModelBenchmarkKey {
  error: string;
  code: string;
}

/** Synthetic batch: seeded noise images, alternating labels (what the Python baseline uses too). */
export function syntheticBatch(batchSize: number, imageSize: number, seed: number) {
  const random = mulberry32(mixSeed(seed));
  const images = Buffer.alloc(batchSize * imageSize * imageSize * 3);
  for (let i = 0; i < images.length; i++) images[i] = Math.floor(random() * 256);
  const labels = Float32Array.from({ length: batchSize }, (_, i) => i % 2);
  return { images, labels, batchSize, height: imageSize, width: imageSize };
}

export async function runModelBenchmark(options: ModelBenchmarkOptions = {}): Promise<ModelBenchmarkResult> {
  const { steps = 10, warmup = 2, ...trainerOptions } = options;
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`Expected integer >= 1 for steps but received ${steps}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`Expected integer >= 0 for warmup but received ${warmup}`);
  const o = resolveOptions(trainerOptions, ENGINE_PROBE);
  const engine = await Engine.create(engineConfig(o, 1));
  try {
    // The batch is staged on the device once and the steps run back to back (data on the
    // device, as in the Python baseline); warm-up covers cuDNN autotuning and graph capture.
    const request = { ...syntheticBatch(o.batchSize, o.imageSize, o.seed), lr: o.lr };
    if (warmup > 0) await engine.benchmarkSteps(request, warmup);
    const timed = await engine.benchmarkSteps(request, steps);
    const seconds = timed.seconds;
    const memory = await engine.memoryStats();
    return {
      benchmark: 'model',
      implementation: 'native',
      model: o.model,
      widthFactor: o.widthFactor,
      batchSize: o.batchSize,
      imageSize: o.imageSize,
      accumulate: o.accumulate,
      device: o.device,
      precision: o.precision,
      channelsLast: o.channelsLast,
      cudaGraph: o.cudaGraph,
      stepMode: engine.info().stepMode,
      parameterCount: engine.info().parameterCount,
      warmupSteps: warmup,
      steps,
      seconds,
      iterationsPerSecond: steps / seconds,
      imagesPerSecond: (steps * o.batchSize) / seconds,
      peakMemoryBytes: memory?.peakAllocatedBytes ?? null,
      meanLoss: timed.meanLoss,
      torchVersion: torchInfo().torchVersion,
      cpuThreads: process.env.OMP_NUM_THREADS ?? 'default',
    };
  } finally {
    await engine.dispose();
  }
}

export interface ModelSweepOptions extends Omit<ModelBenchmarkOptions, 'model' | 'batchSize' | 'precision' | 'cudaGraph'> {
  models: ModelName[];
  batchSizes: number[];
  precisions: Precision[];
  /** Each configuration with and without CUDA graphs (cuda only), or only as given. */
  cudaGraphs: boolean[] | 'default';
}

/**
 * Every combination, one result (or failure) each, in order. Engine failures (out of memory)
 * become rows and the sweep goes on; option errors stop it, as they would stop every row.
 */
export async function* runModelSweep(options: ModelSweepOptions): AsyncGenerator<ModelBenchmarkResult | ModelBenchmarkFailure> {
  const { models, batchSizes, precisions, cudaGraphs, ...rest } = options;
  for (const model of models) {
    for (const precision of precisions) {
      for (const batchSize of batchSizes) {
        for (const cudaGraph of cudaGraphs === 'default' ? [undefined] : cudaGraphs) {
          try {
            yield await runModelBenchmark({ ...rest, model, precision, batchSize, cudaGraph });
          } catch (err) {
            if (!(err instanceof EngineError)) throw err;
            yield {
              benchmark: 'model',
              implementation: 'native',
              model,
              widthFactor: rest.widthFactor ?? 1,
              batchSize,
              imageSize: rest.imageSize ?? 256,
              device: rest.device ?? 'auto',
              precision,
              cudaGraph: cudaGraph ?? false,
              error: err.code === 'ERR_ENGINE_OOM' ? 'out of memory' : err.message,
              code: err.code,
            };
          }
        }
      }
    }
  }
}
