/**
 * What the data pipeline hands to training: samples (one image with its metadata) and batches
 * (one uint8 HWC Buffer plus labels). Shared by src/data (producer) and src/train (consumer).
 */

/** Where an image's JPEG bytes live: a span of a TFRecord file or a file of its own. */
export type ImageSource =
  | { kind: 'tfrecord'; file: string; recordIndex: number; offset: number; length: number }
  | { kind: 'file'; path: string }
  | { kind: 'memory'; bytes: Buffer };

/** One lesion image with its metadata (SIIM-ISIC columns). */
export interface LesionSample {
  imageName: string;
  patientId: string;
  /** 1 = melanoma, 0 = benign; null for test sets. */
  target: 0 | 1 | null;
  sex: string | null;
  ageApprox: number | null;
  anatomSite: string | null;
  diagnosis: string | null;
  image: ImageSource;
}

/**
 * Where JPEGs become pixels: 'sharp' on the CPU (libvips, `decodeConcurrency` at once), or
 * 'nvjpeg' on the GPU: the loader only reads (and checks) the JPEG files and the CUDA engine
 * decodes and resizes them (native/engine/jpeg_decoder.h).
 */
export type DecodeBackend = 'sharp' | 'nvjpeg';
export const DECODE_BACKENDS: readonly DecodeBackend[] = ['sharp', 'nvjpeg'];

/** One batch ready for the engine. */
export interface Batch {
  /** uint8 RGB, HWC, row-major: batchSize * height * width * 3 bytes; empty when `jpegs` holds the batch. */
  images: Buffer;
  /** With decode 'nvjpeg': each image's JPEG file, for the engine to decode to height x width as `fit` says. */
  jpegs?: { files: Buffer[]; fit: 'fill' | 'cover' };
  batchSize: number;
  height: number;
  width: number;
  /** target of each sample as 0/1 (0 for samples without a target). */
  labels: Float32Array;
  /** The samples of this batch, in order: predictions carry their image_name/patient_id. */
  samples: LesionSample[];
}

export interface LoaderOptions {
  batchSize: number;
  /** Square training size in pixels: each image is decoded and resized to imageSize x imageSize. */
  imageSize: number;
  /** Shuffle each epoch (training); validation/test loaders keep order. */
  shuffle: boolean;
  seed: number;
  dropLast: boolean;
  /** Batches decoded ahead of the consumer. */
  prefetchBatches: number;
  /** Images decoded at once (sharp calls in flight; with decode 'nvjpeg', file reads in flight). */
  decodeConcurrency: number;
  /** 'sharp' (default) decodes here; 'nvjpeg' hands the engine the JPEG files (Batch.jpegs). */
  decode?: DecodeBackend;
  /** An image that cannot be read or decoded: 'error' (default) stops the epoch, 'skip' lists it in stats().skipped. */
  onBadImage?: 'skip' | 'error';
  /** Non-square images: 'fill' (default) stretches, 'cover' crops the centre (see src/data/images.ts). */
  fit?: 'fill' | 'cover';
  /**
   * Class-balanced sampling: oversample positives so they make up this fraction of each epoch
   * (e.g. 0.5); negatives are each seen once. Implies a shuffled order. Default: off.
   */
  positiveFraction?: number;
  /**
   * Keep each patient's images together (models with patient context). A shuffled epoch shuffles
   * each patient's images, cuts them into runs of at most patientRunLength, shuffles the runs of
   * all patients, and cuts batches of batchSize from that order (a run at a cut is split). An
   * unshuffled (scoring) loader puts each patient's images next to each other, patients in the
   * order of their first image, and cuts batches of batchSize: a patient may span two batches or
   * more, and the scorer joins them (src/train/patient-head.ts). Default: off.
   */
  groupPatients?: boolean;
  /**
   * With groupPatients and shuffle: the most images of one patient kept together in a training
   * batch. Default: defaultPatientRunLength(batchSize), a quarter of the batch (at least 2).
   */
  patientRunLength?: number;
}

/** Throughput figures a loader reports after (or during) an epoch. */
export interface LoaderStats {
  images: number;
  decodeSeconds: number;
  /** Time the consumer spent waiting for a batch that was not ready. */
  waitSeconds: number;
  imagesPerSecond: number;
  skipped: { imageName: string; source: string; reason: string }[];
}
