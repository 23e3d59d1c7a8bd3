/**
 * The batch loader: a seeded per-epoch order, `decodeConcurrency` sharp decodes in flight, and
 * up to `prefetchBatches` batches decoded ahead while the consumer (the engine) works on the
 * current one. Batches come out in the epoch order whatever order decodes finish in. With
 * decode 'nvjpeg' the same machinery only reads and checks the JPEG files, and the batch carries
 * them for the engine to decode on the GPU.
 */
import { DataError } from './errors';
import { ImageBytesReader, describeSource, loadSampleImage, readSampleJpeg } from './images';
import { defaultPatientRunLength, groupByPatient } from './patients';
import { mixSeed, mulberry32, shuffleInPlace } from './random';
import { Batch, DECODE_BACKENDS, LesionSample, LoaderOptions, LoaderStats } from './types';
import { refuseUnknownOptions } from '../options';

export interface Loader {
  /** Batches of a full epoch (an upper bound when images are skipped). */
  readonly batchesPerEpoch: number;
  /** Samples drawn per epoch (larger than the set under class-balanced sampling). */
  readonly samplesPerEpoch: number;
  /** The sample indices of an epoch, in order: the same seed and epoch give the same order. */
  epochOrder(epochIndex: number): number[];
  /**
   * The epoch's batches in its seeded order. `fromBatch` starts at that batch (0-based) without
   * reading the ones before it, as a run resumed within an epoch needs; it requires
   * onBadImage 'error', so that batch k always starts at image k x batchSize.
   */
  epoch(epochIndex: number, options?: { fromBatch?: number }): AsyncIterable<Batch>;
  /**
   * Figures of the epoch running or last run: `decodeSeconds` sums each image's read + decode
   * time (more than wall time when decodes overlap), `waitSeconds` is time the consumer spent
   * blocked on a batch, `imagesPerSecond` is images delivered per wall second since the epoch
   * began, `skipped` lists the images skipped in it.
   */
  stats(): LoaderStats;
}

const OPTION_NAMES = [
  'batchSize',
  'imageSize',
  'shuffle',
  'seed',
  'dropLast',
  'prefetchBatches',
  'decodeConcurrency',
  'onBadImage',
  'fit',
  'positiveFraction',
  'decode',
  'groupPatients',
  'patientRunLength',
];

/** What is wrong with one sample as a script may have built it (past the type), or null. */
function sampleProblem(sample: unknown): string | null {
  if (typeof sample !== 'object' || sample === null) return `is ${sample === null ? 'null' : `a ${typeof sample}`}, not a LesionSample object`;
  const { imageName, image } = sample as { imageName?: unknown; image?: unknown };
  if (typeof imageName !== 'string' || imageName === '') return `has no imageName (a non-empty string)`;
  if (typeof image !== 'object' || image === null) return `(${imageName}) has no image: { kind: 'file', path } or { kind: 'memory', bytes } (openDataset fills it in)`;
  const source = image as Record<string, unknown>;
  const ok =
    (source.kind === 'file' && typeof source.path === 'string') ||
    (source.kind === 'memory' && Buffer.isBuffer(source.bytes)) ||
    (source.kind === 'tfrecord' && typeof source.file === 'string' && [source.recordIndex, source.offset, source.length].every((v) => Number.isInteger(v)));
  return ok ? null : `(${imageName}) has an image of kind ${JSON.stringify(source.kind)} without its fields: { kind: 'file', path }, { kind: 'memory', bytes } or a TFRecord span from openDataset`;
}

/**
 * Refuses samples a script built wrongly (no imageName, no image, an image without its fields)
 * with the first one named, before any of them is read. `what` names the set ("training images").
 */
export function checkSamples(samples: readonly unknown[], what: string): void {
  for (let i = 0; i < samples.length; i++) {
    const problem = sampleProblem(samples[i]);
    if (problem) throw new TypeError(`Expected LesionSample objects for the ${what} but sample ${i} ${problem}`);
  }
}

function validate(samples: LesionSample[], o: LoaderOptions): void {
  if (!Array.isArray(samples)) throw new TypeError(`Expected an array of samples but received ${typeof samples}`);
  checkSamples(samples, 'images to load');
  if (typeof o !== 'object' || o === null) throw new TypeError('Expected a LoaderOptions object');
  refuseUnknownOptions(o, OPTION_NAMES, { kind: 'loader option' });
  const positiveInt = (name: keyof LoaderOptions, min: number) => {
    const v = o[name];
    if (!Number.isInteger(v) || (v as number) < min)
      throw new RangeError(`Expected integer >= ${min} for ${name} but received ${String(v)} of type ${typeof v}`);
  };
  positiveInt('batchSize', 1);
  positiveInt('imageSize', 1);
  positiveInt('prefetchBatches', 0);
  positiveInt('decodeConcurrency', 1);
  if (!Number.isInteger(o.seed)) throw new RangeError(`Expected integer for seed but received ${String(o.seed)}`);
  for (const name of ['shuffle', 'dropLast'] as const)
    if (typeof o[name] !== 'boolean') throw new TypeError(`Expected boolean for ${name} but received ${typeof o[name]}`);
  if (o.groupPatients !== undefined && typeof o.groupPatients !== 'boolean') throw new TypeError(`Expected boolean for groupPatients but received ${typeof o.groupPatients}`);
  if (o.groupPatients && o.positiveFraction !== undefined)
    throw new RangeError('Expected no positiveFraction with groupPatients: repeated positives would each be scored in the context of their own copies');
  if (o.patientRunLength !== undefined) {
    if (!o.groupPatients || !o.shuffle) throw new RangeError('Expected patientRunLength only with groupPatients and shuffle (it shapes training epochs)');
    if (!Number.isInteger(o.patientRunLength) || o.patientRunLength < 1) throw new RangeError(`Expected positive integer for patientRunLength but received ${String(o.patientRunLength)}`);
  }
  if (o.onBadImage !== undefined && o.onBadImage !== 'skip' && o.onBadImage !== 'error')
    throw new RangeError(`Expected 'skip' or 'error' for onBadImage but received '${String(o.onBadImage)}'`);
  if (o.decode !== undefined && !DECODE_BACKENDS.includes(o.decode))
    throw new RangeError(`Expected one of ${DECODE_BACKENDS.join(', ')} for decode but received '${String(o.decode)}'`);
  if (o.fit !== undefined && o.fit !== 'fill' && o.fit !== 'cover') throw new RangeError(`Expected 'fill' or 'cover' for fit but received '${String(o.fit)}'`);
  if (o.positiveFraction !== undefined) {
    const p = o.positiveFraction;
    if (typeof p !== 'number' || !(p > 0 && p < 1)) throw new RangeError(`Expected a number in (0, 1) for positiveFraction but received ${String(p)}`);
    const positives = samples.filter((s) => s.target === 1).length;
    if (positives === 0 || positives === samples.length)
      throw new RangeError(`positiveFraction needs both classes but the samples hold ${positives} positives of ${samples.length}`);
  }
}

/**
 * Indices of one epoch under class-balanced sampling: every negative once, positives repeated
 * (whole copies, the remainder drawn without replacement) to make up `fraction` of the epoch.
 */
function balancedIndices(samples: LesionSample[], fraction: number, random: () => number): number[] {
  const pos: number[] = [];
  const neg: number[] = [];
  samples.forEach((s, i) => (s.target === 1 ? pos : neg).push(i));
  const wanted = Math.max(pos.length, Math.round((fraction / (1 - fraction)) * neg.length));
  const out = neg.slice();
  for (let k = 0; k < Math.floor(wanted / pos.length); k++) out.push(...pos);
  out.push(...shuffleInPlace(pos.slice(), random).slice(0, wanted % pos.length));
  return out;
}

/** A batch's images as the engine takes them: its pixels, or its JPEG files (decode 'nvjpeg'). */
export function engineImages(batch: Batch): { images: Buffer } | { jpegs: Buffer[]; fit: 'fill' | 'cover' } {
  return batch.jpegs ? { jpegs: batch.jpegs.files, fit: batch.jpegs.fit } : { images: batch.images };
}

function emptyStats(): LoaderStats {
  return { images: 0, decodeSeconds: 0, waitSeconds: 0, imagesPerSecond: 0, skipped: [] };
}

const now = () => performance.now() / 1000;

export function createLoader(samples: LesionSample[], options: LoaderOptions): Loader {
  validate(samples, options);
  const o = { onBadImage: 'error' as const, fit: 'fill' as const, decode: 'sharp' as const, ...options };
  const load = (sample: LesionSample, reader: ImageBytesReader) =>
    o.decode === 'nvjpeg' ? readSampleJpeg(sample, reader) : loadSampleImage(sample, o.imageSize, reader, o.fit);
  const samplesPerEpoch = o.positiveFraction !== undefined ? balancedIndices(samples, o.positiveFraction, mulberry32(0)).length : samples.length;
  // An unshuffled loader that groups patients has the same order every epoch: grouped once.
  const scoringOrder = o.groupPatients && !o.shuffle ? groupByPatient(samples, samples.map((_, i) => i)).flat() : null;
  const batchesPerEpoch = o.dropLast ? Math.floor(samplesPerEpoch / o.batchSize) : Math.ceil(samplesPerEpoch / o.batchSize);
  let current = emptyStats();

  function epochOrder(epochIndex: number): number[] {
    if (!Number.isInteger(epochIndex) || epochIndex < 0) throw new RangeError(`Expected integer >= 0 for epochIndex but received ${epochIndex}`);
    const random = mulberry32(mixSeed(o.seed, epochIndex));
    if (o.positiveFraction !== undefined) return shuffleInPlace(balancedIndices(samples, o.positiveFraction, random), random);
    if (scoringOrder) return [...scoringOrder];
    const order = samples.map((_, i) => i);
    if (o.groupPatients) return groupByPatient(samples, order, { random, runLength: o.patientRunLength ?? defaultPatientRunLength(o.batchSize) }).flat();
    return o.shuffle ? shuffleInPlace(order, random) : order;
  }

  async function* epoch(epochIndex: number, { fromBatch = 0 }: { fromBatch?: number } = {}): AsyncGenerator<Batch> {
    const order = epochOrder(epochIndex);
    if (!Number.isInteger(fromBatch) || fromBatch < 0 || fromBatch > batchesPerEpoch)
      throw new RangeError(`Expected integer between 0 and ${batchesPerEpoch} for fromBatch but received ${String(fromBatch)}`);
    // Skipped images would shift every later batch: only a loader that never skips can start mid-epoch.
    if (fromBatch > 0 && o.onBadImage !== 'error') throw new RangeError("Expected onBadImage 'error' to start an epoch at a later batch (skipped images would shift the batches)");
    const firstPosition = fromBatch * o.batchSize;
    const stats = emptyStats();
    current = stats;
    const started = now();
    const pixels = o.imageSize * o.imageSize * 3;
    const reader = new ImageBytesReader();
    type Slot = { done: boolean; data?: Buffer; error?: unknown };
    const slots: (Slot | undefined)[] = new Array(order.length);
    const inFlight = new Set<Promise<void>>();
    let launched = firstPosition;
    let limit = 0; // positions below this may be decoded now
    let stopped = false;
    let wake: (() => void) | null = null;

    const pump = () => {
      while (!stopped && inFlight.size < o.decodeConcurrency && launched < Math.min(limit, order.length)) {
        const slot: Slot = { done: false };
        slots[launched] = slot;
        const sample = samples[order[launched++]];
        const t0 = now();
        const task = load(sample, reader).then(
          (data) => void (slot.data = data),
          (error) => void (slot.error = error),
        );
        const tracked: Promise<void> = task.then(() => {
          stats.decodeSeconds += now() - t0;
          slot.done = true;
          inFlight.delete(tracked);
          pump();
          const w = wake;
          wake = null;
          w?.();
        });
        inFlight.add(tracked);
      }
    };

    let batch: LesionSample[] = [];
    let images: Buffer[] = [];
    const assemble = (): Batch => {
      const jpegs = o.decode === 'nvjpeg';
      const buffer = Buffer.allocUnsafe(jpegs ? 0 : images.length * pixels);
      if (!jpegs) images.forEach((img, i) => img.copy(buffer, i * pixels));
      const out: Batch = {
        images: buffer,
        ...(jpegs ? { jpegs: { files: images, fit: o.fit } } : {}),
        batchSize: batch.length,
        height: o.imageSize,
        width: o.imageSize,
        labels: Float32Array.from(batch, (s) => s.target ?? 0),
        samples: batch,
      };
      batch = [];
      images = [];
      return out;
    };

    try {
      let batchStart = firstPosition;
      for (let pos = firstPosition; pos < order.length; pos++) {
        // The batch being built plus `prefetchBatches` more may decode ahead.
        limit = Math.max(pos + 1, batchStart + (o.prefetchBatches + 1) * o.batchSize);
        pump();
        if (!slots[pos]!.done) {
          const t0 = now();
          while (!slots[pos]!.done) await new Promise<void>((resolve) => (wake = resolve));
          stats.waitSeconds += now() - t0;
        }
        const slot = slots[pos]!;
        slots[pos] = undefined; // let decoded pixels go once copied
        const sample = samples[order[pos]];
        if (slot.error !== undefined) {
          if (o.onBadImage === 'error' || !(slot.error instanceof DataError)) throw slot.error;
          stats.skipped.push({ imageName: sample.imageName, source: describeSource(sample.image), reason: slot.error.message });
          continue;
        }
        batch.push(sample);
        images.push(slot.data!);
        stats.images++;
        stats.imagesPerSecond = stats.images / Math.max(now() - started, 1e-9);
        if (batch.length === o.batchSize) {
          batchStart = pos + 1;
          limit = Math.max(limit, batchStart + o.prefetchBatches * o.batchSize);
          pump(); // keep decoding while the consumer holds this batch
          yield assemble();
        }
      }
      if (batch.length > 0 && !o.dropLast) yield assemble();
    } finally {
      // Stop launching; let reads in flight finish before their file handles close.
      stopped = true;
      await Promise.all(inFlight);
      await reader.close();
      stats.imagesPerSecond = stats.images / Math.max(now() - started, 1e-9);
    }
  }

  return {
    batchesPerEpoch,
    samplesPerEpoch,
    epochOrder,
    epoch,
    stats: () => ({ ...current, skipped: current.skipped.slice() }),
  };
}
