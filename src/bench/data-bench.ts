/**
 * Data-path benchmark: images/s of TFRecord read + JPEG decode + resize + batch assembly, the
 * loader exactly as training uses it, from generated 1024x1024 JPEGs at each training size.
 * "per core": one decode in flight, libvips on one thread; "total": every core busy.
 */
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { openDataset } from '../data/isic';
import { createLoader } from '../data/loader';
import { PACKAGE_ROOT } from '../native';
import { ensureJpegRecords } from './jpeg-records';

export interface DataBenchmarkOptions {
  /** Folder for the generated TFRecords, reused across runs (default .cache/data-bench). */
  dir?: string;
  /** Generated images (default 128). */
  images?: number;
  /** Side of the generated JPEGs (default 1024). */
  sourceSize?: number;
  /** Training sizes measured (default [256, 512]). */
  sizes?: number[];
  batchSize?: number;
  /** Decodes in flight for the "total" run (default 2 x cores). */
  concurrency?: number;
  /** Timed epochs per row (default 2). */
  epochs?: number;
}

export interface DataBenchmarkRow {
  imageSize: number;
  mode: 'per-core' | 'total';
  decodeConcurrency: number;
  images: number;
  seconds: number;
  imagesPerSecond: number;
}

export interface DataBenchmarkResult {
  sourceSize: number;
  images: number;
  meanJpegBytes: number;
  cores: number;
  rows: DataBenchmarkRow[];
}

export async function runDataBenchmark(options: DataBenchmarkOptions = {}): Promise<DataBenchmarkResult> {
  const cores = os.cpus().length;
  const images = options.images ?? 128;
  const sourceSize = options.sourceSize ?? 1024;
  const sizes = options.sizes ?? [256, 512];
  const batchSize = options.batchSize ?? 32;
  const concurrency = options.concurrency ?? 2 * cores;
  const epochs = options.epochs ?? 2;
  for (const [name, v] of Object.entries({ images, sourceSize, batchSize, concurrency, epochs }))
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`Expected positive integer for ${name} but received ${v}`);
  const setDir = await ensureJpegRecords({ dir: options.dir ?? path.join(PACKAGE_ROOT, '.cache', 'data-bench'), records: images, distinct: images, sourceSize, files: 4 });
  const { samples } = await openDataset(setDir);
  const meanJpegBytes = samples.reduce((n, s) => n + (s.image.kind === 'tfrecord' ? s.image.length : 0), 0) / samples.length;

  const vipsThreads = sharp.concurrency();
  const rows: DataBenchmarkRow[] = [];
  try {
    sharp.concurrency(1); // one libvips thread per image: parallelism comes from images in flight
    for (const imageSize of sizes) {
      for (const [mode, decodeConcurrency] of [['per-core', 1], ['total', concurrency]] as const) {
        const loader = createLoader(samples, {
          batchSize,
          imageSize,
          shuffle: true,
          seed: 1,
          dropLast: false,
          prefetchBatches: 2,
          decodeConcurrency,
        });
        // Warm-up (file cache, sharp init) on one batch, then the timed epochs.
        for await (const _ of loader.epoch(99)) break;
        const t0 = performance.now();
        let n = 0;
        for (let e = 0; e < epochs; e++) for await (const batch of loader.epoch(e)) n += batch.batchSize;
        const seconds = (performance.now() - t0) / 1000;
        rows.push({ imageSize, mode, decodeConcurrency, images: n, seconds, imagesPerSecond: n / seconds });
      }
    }
  } finally {
    sharp.concurrency(vipsThreads);
  }
  return { sourceSize, images, meanJpegBytes, cores, rows };
}
