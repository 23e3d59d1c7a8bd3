/**
 * End-to-end training throughput: TFRecords of 1024x1024 JPEGs -> io addon -> sharp decode and
 * resize -> uint8 batches -> engine train steps, exactly as training runs them, next to the
 * model-side figure of the same configuration measured in the same process (synthetic batches,
 * no loading). The ratio says whether the data path keeps the device fed; the time split says
 * where the rest goes. It reports; it never asserts a speed.
 */
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { openDataset } from '../data/isic';
import { createLoader, engineImages } from '../data/loader';
import { ENGINE_PROBE, TrainerOptions, engineConfig, resolveOptions } from '../model/config';
import { Engine, PACKAGE_ROOT } from '../native';
import { ensureJpegRecords } from './jpeg-records';
import { ModelBenchmarkResult, runModelBenchmark } from './model-bench';

export interface EndToEndOptions extends TrainerOptions {
  /** Records in the generated set (default 2048). */
  records?: number;
  /** Distinct JPEGs among them (default 64): rendering is slow, decoding cost is per record. */
  distinctImages?: number;
  /** Side of the generated JPEGs (default 1024, as the SIIM-ISIC originals are larger still). */
  sourceSize?: number;
  /** Timed train steps (default 40) after `warmup` untimed ones (default 5). */
  steps?: number;
  warmup?: number;
  /** Folder for the generated TFRecords, reused across runs (default .cache/e2e-bench). */
  dir?: string;
  /** Skip the model-side run (the ratio is then null). */
  skipModelSide?: boolean;
}

export interface EndToEndResult {
  benchmark: 'end-to-end';
  model: string;
  batchSize: number;
  imageSize: number;
  sourceSize: number;
  meanJpegBytes: number;
  device: string;
  precision: string;
  cudaGraph: boolean;
  /** Where the JPEGs were decoded: 'sharp' (CPU) or 'nvjpeg' (GPU, inside the train steps). */
  decode: string;
  /** With nvjpeg: the backend that decoded ('hardware': the GPU's JPEG engines, or 'cuda'). */
  jpegBackend: string | null;
  cores: number;
  decodeConcurrency: number;
  threadpoolSize: string;
  steps: number;
  seconds: number;
  imagesPerSecond: number;
  /** The same configuration on synthetic batches (no loading), measured in this run. */
  modelSideImagesPerSecond: number | null;
  /** imagesPerSecond / modelSideImagesPerSecond (issue 7's target at batch 128: >= 0.9). */
  ratioToModelSide: number | null;
  /** Where the timed wall time went, in seconds (they add up to `seconds`, up to rounding). */
  time: {
    /** Waiting for the loader's next batch: decoding did not keep up. */
    waitForData: number;
    /**
     * Awaiting the step in flight (its copy, compute and read-back not hidden behind the next
     * batch's fetch; with nvjpeg, the batch's GPU decode too).
     */
    trainStep: number;
    /** Everything else on the JS thread (bookkeeping between the two). */
    other: number;
  };
  /** Sum over images of read + decode + resize time (exceeds wall time when decodes overlap). */
  decodeSecondsSum: number;
  /** What decoding could deliver with every decode slot busy: concurrency / mean decode time. */
  decodeCapacityImagesPerSecond: number;
}

export async function runEndToEndBenchmark(options: EndToEndOptions = {}): Promise<EndToEndResult> {
  const { records = 2048, distinctImages = 64, sourceSize = 1024, steps = 40, warmup = 5, dir, skipModelSide = false, ...trainerOptions } = options;
  for (const [name, v] of Object.entries({ records, distinctImages, sourceSize, steps }))
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`Expected positive integer for ${name} but received ${v}`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new RangeError(`Expected integer >= 0 for warmup but received ${warmup}`);
  const o = resolveOptions(trainerOptions, ENGINE_PROBE);
  if ((warmup + steps) * o.batchSize > records)
    throw new RangeError(`Expected records (--records) >= (warmup + steps) x batchSize = ${(warmup + steps) * o.batchSize} but received ${records}: one pass must cover the run`);

  const setDir = await ensureJpegRecords({ dir: dir ?? path.join(PACKAGE_ROOT, '.cache', 'e2e-bench'), records, distinct: distinctImages, sourceSize, files: 8 });
  const { samples } = await openDataset(setDir);
  const meanJpegBytes = samples.reduce((n, s) => n + (s.image.kind === 'tfrecord' ? s.image.length : 0), 0) / samples.length;
  const cores = os.availableParallelism();

  let modelSide: ModelBenchmarkResult | null = null;
  if (!skipModelSide) modelSide = await runModelBenchmark({ ...trainerOptions, steps: Math.min(steps, 20), warmup });

  const engine = await Engine.create(engineConfig(o, 1));
  const vipsThreads = sharp.concurrency();
  try {
    // Parallelism comes from images in flight (one per pool thread), not from libvips threads
    // inside one image: that would oversubscribe the cores.
    sharp.concurrency(1);
    const loader = createLoader(samples, {
      batchSize: o.batchSize,
      imageSize: o.imageSize,
      shuffle: true,
      seed: o.seed,
      dropLast: true,
      prefetchBatches: o.prefetch,
      decodeConcurrency: o.workers,
      decode: o.decode,
    });
    // As the Trainer drives it: one step in flight while the next batch is fetched and submitted.
    // The timed window runs from the warm-up's last completion to the last timed completion.
    let completed = 0;
    let started = performance.now();
    let waitForData = 0;
    let trainStep = 0;
    let inFlight: Promise<unknown> | null = null;
    let mark = performance.now();
    // Waits for a step and counts it: the warm-up's last completion starts the timed window.
    const complete = async (step: Promise<unknown>) => {
      const before = performance.now();
      await step;
      const after = performance.now();
      completed += 1;
      if (completed === warmup) started = after;
      else if (completed > warmup) trainStep += after - before;
      mark = after;
    };
    for await (const batch of loader.epoch(0)) {
      if (completed >= warmup) waitForData += performance.now() - mark;
      const next = engine.trainStep({ ...engineImages(batch), labels: batch.labels, batchSize: batch.batchSize, height: batch.height, width: batch.width, lr: o.lr });
      next.catch(() => undefined); // awaited on the next batch
      if (inFlight) await complete(inFlight);
      inFlight = next;
      mark = performance.now();
      if (completed === warmup + steps) break;
    }
    if (inFlight) {
      // The last step submitted: timed when the loader ran out before the window was full.
      if (completed < warmup + steps) await complete(inFlight);
      else await inFlight;
    }
    const timed = completed - warmup;
    const endedAt = mark;
    const seconds = (endedAt - started) / 1000;
    const stats = loader.stats();
    const imagesPerSecond = (timed * o.batchSize) / seconds;
    return {
      benchmark: 'end-to-end',
      model: o.model,
      batchSize: o.batchSize,
      imageSize: o.imageSize,
      sourceSize,
      meanJpegBytes: Math.round(meanJpegBytes),
      device: o.device,
      precision: o.precision,
      cudaGraph: o.cudaGraph,
      decode: o.decode,
      jpegBackend: engine.info().jpegBackend,
      cores,
      decodeConcurrency: o.workers,
      threadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '4 (libuv default)',
      steps: timed,
      seconds,
      imagesPerSecond,
      modelSideImagesPerSecond: modelSide?.imagesPerSecond ?? null,
      ratioToModelSide: modelSide ? imagesPerSecond / modelSide.imagesPerSecond : null,
      time: { waitForData: waitForData / 1000, trainStep: trainStep / 1000, other: seconds - (waitForData + trainStep) / 1000 },
      decodeSecondsSum: stats.decodeSeconds,
      decodeCapacityImagesPerSecond: stats.decodeSeconds > 0 ? (stats.images * o.workers) / stats.decodeSeconds : 0,
    };
  } finally {
    sharp.concurrency(vipsThreads);
    await engine.dispose();
  }
}
