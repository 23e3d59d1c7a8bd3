/**
 * Inference for a submission: one checkpoint or an ensemble (a run folder's best, a CV folder's
 * folds, or files), optional test-time augmentation over the 8 flips/transposes of the square,
 * and `submission.csv` in the Kaggle format (`image_name,target`). Existing files are never
 * overwritten.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { CalibratorError, applyCalibrator, calibratorFeatures, readCalibrator } from './calibrate';
import { DataError } from './data/errors';
import { uglyDucklingScores } from './metrics/ugly-duckling';
import { openDataset, refuseRepeatedNames } from './data/isic';
import type { LesionSample } from './data/types';
import { checkOutputLocations, csvField, OutputExistsError, writeNewFiles } from './files';
import { rocAucOrNull } from './metrics/auc';
import { logit } from './metrics/calibration';
import type { Device, TrainerOptions } from './model/config';
import { predictionsCsv, trainingImagesOf } from './train/run';
import { Trainer, ViewTransform } from './train/trainer';

/** The 8 symmetries of a square, in the order TTA takes them (2 views = identity + flip, ...). */
export const TTA_VIEWS = ['identity', 'hflip', 'vflip', 'rot180', 'transpose', 'rot90', 'rot270', 'antitranspose'] as const;
export type TtaView = (typeof TTA_VIEWS)[number];

export type EnsembleMode = 'mean' | 'rank';

/** How saved models run when they score images (predict, embed, explain); unset: as trained. */
export interface ScoringOptions {
  /** Default: the size each checkpoint last trained at. */
  imageSize?: number;
  batchSize?: number;
  workers?: number;
  device?: Device | 'auto';
  log?: (line: string) => void;
}

/** The Trainer.load overrides of ScoringOptions: only those given. */
export function scoringOverrides({ batchSize, workers, device }: ScoringOptions): TrainerOptions {
  return Object.fromEntries(Object.entries({ batchSize, workers, device }).filter(([, v]) => v !== undefined));
}

export interface PredictOptions extends ScoringOptions {
  /**
   * Checkpoint files (.safetensors), run folders (their best.safetensors) or CV folders (every
   * fold's best.safetensors): several make an ensemble.
   */
  checkpoints: readonly string[];
  /** Test images: a folder of *.tfrec files, a JPEG folder (with or without a CSV), or a CSV. */
  data: string;
  csv?: string;
  /** Submission file (default submission.csv); refused if it exists. */
  out?: string;
  /** How models combine: mean of probabilities (default) or mean of normalised ranks. */
  ensemble?: EnsembleMode;
  /** Test-time views per image, 1 (none, default) to 8; their probabilities are averaged. */
  tta?: number;
  /** Also write every model's score of every view: image_name,checkpoint,view,score. */
  perViewCsv?: string;
  /**
   * Also write the submission's scores as a predictions CSV (image_name,patient_id,target,score,
   * fold), which `evaluate`, `compare` and `calibrate` read: for a labelled held-out set.
   */
  scoresCsv?: string;
  /**
   * A file from `melanoma calibrate`: the combined probabilities pass through it, so the
   * submission holds calibrated probabilities (platt), or patient-context or patient-embedding
   * scores.
   */
  calibrator?: string;
  /** After every batch: how far scoring has got, over all checkpoints. */
  onProgress?: (progress: PredictProgress) => void;
}

export interface PredictProgress {
  /** 1-based checkpoint being scored, of `checkpoints`. */
  checkpoint: number;
  checkpoints: number;
  /** Images this checkpoint has scored (each with every view), of `images`. */
  scored: number;
  images: number;
  /** Images (all views) per second over the whole prediction so far. */
  imagesPerSecond: number;
  /** Seconds left at that rate, for every checkpoint. */
  etaSeconds: number;
}

export interface SubmissionRow {
  imageName: string;
  target: number;
}

export interface PredictResult {
  rows: SubmissionRow[];
  checkpoints: string[];
  views: TtaView[];
  /** AUC of the final scores when the test images carry targets (else null). */
  auc: number | null;
  /** The calibrator file applied, if any. */
  calibrator: string | null;
  written: string[];
}

/** A ViewTransform for one symmetry of the square (uint8 HWC, height === width). */
export function viewTransform(view: TtaView): ViewTransform | null {
  if (view === 'identity') return null;
  // Where output pixel (y, x) comes from, for an n x n image.
  const source: Record<Exclude<TtaView, 'identity'>, (y: number, x: number, n: number) => [number, number]> = {
    hflip: (y, x, n) => [y, n - 1 - x],
    vflip: (y, x, n) => [n - 1 - y, x],
    rot180: (y, x, n) => [n - 1 - y, n - 1 - x],
    transpose: (y, x) => [x, y],
    rot90: (y, x, n) => [n - 1 - x, y],
    rot270: (y, x, n) => [x, n - 1 - y],
    antitranspose: (y, x, n) => [n - 1 - x, n - 1 - y],
  };
  const from = source[view];
  return (images, batchSize, height, width) => {
    if (height !== width) throw new RangeError(`Expected square images for the ${view} view but received ${height}x${width}`);
    const n = height;
    // The same source offsets for every image of the batch.
    const map = new Int32Array(n * n);
    for (let y = 0; y < n; y++)
      for (let x = 0; x < n; x++) {
        const [sy, sx] = from(y, x, n);
        map[y * n + x] = (sy * n + sx) * 3;
      }
    const out = Buffer.allocUnsafe(images.length);
    const plane = n * n * 3;
    for (let b = 0; b < batchSize; b++) {
      const base = b * plane;
      for (let p = 0; p < n * n; p++) {
        const s = base + map[p];
        const d = base + p * 3;
        out[d] = images[s];
        out[d + 1] = images[s + 1];
        out[d + 2] = images[s + 2];
      }
    }
    return out;
  };
}

/** Normalised ranks in (0, 1], ties sharing their average rank. */
export function normalisedRanks(scores: readonly number[]): number[] {
  const order = scores.map((s, i) => [s, i] as const).sort((a, b) => a[0] - b[0]);
  const ranks = new Array<number>(scores.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[order[k][1]] = rank / scores.length;
    i = j + 1;
  }
  return ranks;
}

async function stat(p: string) {
  return fsp.stat(p).catch(() => null);
}

/** A cv folder's fold-K/best.safetensors, in fold order, whether or not each exists yet. */
export async function cvFoldCheckpoints(dir: string): Promise<{ fold: number; checkpoint: string; present: boolean }[]> {
  const names = (await fsp.readdir(dir)).filter((n) => /^fold-\d+$/.test(n)).sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  return Promise.all(
    names.map(async (n) => {
      const checkpoint = path.join(dir, n, 'best.safetensors');
      return { fold: Number(n.slice(5)), checkpoint, present: (await stat(checkpoint)) !== null };
    }),
  );
}

/** Checkpoint files from files, run folders and CV folders, in order. */
export async function resolveCheckpoints(inputs: readonly string[]): Promise<string[]> {
  if (!Array.isArray(inputs) || inputs.length === 0)
    throw new TypeError(
      `Expected an array of at least one checkpoint (a .safetensors file, a run folder or a cv folder) but received ${Array.isArray(inputs) ? 'none' : typeof inputs === 'string' ? `the string '${inputs}': pass ['${inputs}']` : String(inputs)}`,
    );
  const files: string[] = [];
  for (const input of inputs) {
    const st = await stat(input);
    if (!st) throw new RangeError(`Checkpoint ${input} does not exist: pass a .safetensors file, a run folder (uses its best.safetensors) or a cv folder (uses every fold's)`);
    if (st.isFile()) {
      files.push(input);
      continue;
    }
    if (await stat(path.join(input, 'best.safetensors'))) {
      files.push(path.join(input, 'best.safetensors'));
      continue;
    }
    const present = (await cvFoldCheckpoints(input)).filter((f) => f.present).map((f) => f.checkpoint);
    if (present.length === 0) throw new RangeError(`${input} holds no best.safetensors and no fold-*/best.safetensors: pass a checkpoint file, a run folder or a cv folder`);
    files.push(...present);
  }
  return files;
}

// The engine decodes JPEGs (ISIC's images are JPEGs; nvJPEG reads nothing else).
const JPEG_EXTENSIONS = /\.jpe?g$/i;
const OTHER_IMAGE_EXTENSIONS = /\.(png|tiff?|bmp|webp|gif)$/i;

/**
 * Test samples: a SIIM-ISIC set (TFRecords, or a CSV with its JPEGs) via openDataset, or a bare
 * folder of images (image_name = file name without extension, no target).
 */
export async function openTestImages(data: string, csv?: string): Promise<LesionSample[]> {
  const st = await stat(data);
  if (st?.isDirectory() && !csv) {
    const names = await fsp.readdir(data);
    if (!names.some((n) => n.endsWith('.tfrec') || n.toLowerCase().endsWith('.csv'))) {
      const images = names.filter((n) => JPEG_EXTENSIONS.test(n)).sort();
      const others = names.filter((n) => OTHER_IMAGE_EXTENSIONS.test(n)).sort();
      if (others.length > 0)
        throw new DataError(
          'ERR_IMAGE_FORMAT',
          `${data} holds ${others.length} image(s) that are not JPEGs (e.g. ${others[0]}): the engine reads JPEGs, as ISIC's images are; convert them to JPEG (quality 95 keeps the detail), or move them out of the folder`,
          { file: path.join(data, others[0]) },
        );
      if (images.length === 0)
        throw new DataError('ERR_DATASET_EMPTY', `${data} holds no *.tfrec, CSV or JPEG files: pass a folder of test images or TFRecords`, { file: data });
      // ISIC_1.jpg beside ISIC_1.jpeg: one name for two files, which the submission could not tell apart.
      refuseRepeatedNames(
        data,
        images.map((name) => ({ imageName: name.replace(JPEG_EXTENSIONS, ''), where: name })),
        'keep one file of each image in the folder',
      );
      return images.map((name) => ({
        imageName: name.replace(JPEG_EXTENSIONS, ''),
        patientId: '',
        target: null,
        sex: null,
        ageApprox: null,
        anatomSite: null,
        diagnosis: null,
        image: { kind: 'file', path: path.join(data, name) },
      }));
    }
  }
  return (await openDataset(data, { csv })).samples;
}


const CHOOSE_ANOTHER_OUT = 'choose another --out/--per-view/--scores path or move the existing file away';

async function refuseExisting(files: readonly string[]): Promise<void> {
  const existing = [];
  for (const f of files) if (await stat(f)) existing.push(f);
  if (existing.length) throw new OutputExistsError(`Refusing to overwrite ${existing.join(' and ')}: ${CHOOSE_ANOTHER_OUT}`);
}

/**
 * A warning when some of `samples` are images a checkpoint trained on (its run folder's folds
 * say so), or null.
 */
async function trainedOnByCheckpoints(checkpoints: readonly string[], samples: readonly LesionSample[]): Promise<string | null> {
  let example: { imageName: string; checkpoint: string } | null = null;
  const seen = new Set<string>();
  for (const checkpoint of checkpoints) {
    const trained = await trainingImagesOf(path.dirname(checkpoint));
    if (!trained) continue;
    for (const s of samples) {
      if (!trained.has(s.imageName)) continue;
      seen.add(s.imageName);
      example ??= { imageName: s.imageName, checkpoint };
    }
  }
  if (!example) return null;
  return (
    `warning: ${seen.size} of ${samples.length} images to predict were training images of the checkpoints (e.g. ${example.imageName}, of ${example.checkpoint}): ` +
    'their scores, and any AUC of them, are optimistic, not a test result; score held-out images (for a cv folder, its oof_predictions.csv are the honest scores)'
  );
}

/**
 * Scores the test images with every checkpoint and view, combines them (views: mean
 * probability; checkpoints: `ensemble`), and writes the submission (and the per-view CSV).
 */
export async function predict(options: PredictOptions): Promise<PredictResult> {
  const { data, csv, out = 'submission.csv', ensemble = 'mean', tta = 1, perViewCsv, scoresCsv, imageSize, log = () => undefined, onProgress } = options;
  if (ensemble !== 'mean' && ensemble !== 'rank') throw new RangeError(`Expected 'mean' or 'rank' for ensemble but received '${String(ensemble)}'`);
  if (!Number.isInteger(tta) || tta < 1 || tta > 8) throw new RangeError(`Expected integer between 1 and 8 for tta but received ${String(tta)}`);
  if (imageSize !== undefined && (!Number.isInteger(imageSize) || imageSize < 32 || imageSize > 2048))
    throw new RangeError(`Expected integer between 32 and 2048 for imageSize but received ${String(imageSize)}`);
  // Before the (long) inference: no output over an existing file, each with a writable folder.
  const outputs = [
    { file: out, option: '--out' },
    ...(perViewCsv ? [{ file: perViewCsv, option: '--per-view' }] : []),
    ...(scoresCsv ? [{ file: scoresCsv, option: '--scores' }] : []),
  ];
  await checkOutputLocations(outputs);
  await refuseExisting(outputs.map((o) => o.file));
  const calibrator = options.calibrator === undefined ? null : await readCalibrator(options.calibrator);
  const checkpoints = await resolveCheckpoints(options.checkpoints);
  if (calibrator && ensemble === 'rank' && checkpoints.length > 1)
    throw new CalibratorError(`A calibrator needs probabilities, but --ensemble rank combines ${checkpoints.length} checkpoints into ranks: use --ensemble mean with --calibrator`);
  const samples = await openTestImages(data, csv);
  if (samples.length === 0) throw new DataError('ERR_DATASET_EMPTY', `${data} holds no images to predict`, { file: data });
  const unlabelled = samples.filter((s) => s.target === null).length;
  if (scoresCsv && unlabelled > 0)
    throw new RangeError(`Expected images with targets for --scores (a predictions CSV holds each image's target) but ${unlabelled} of the ${samples.length} images of ${data} have none: leave out --scores; the submission holds their scores`);
  // Before the (long) inference: patient context needs every image's patient.
  if (calibrator) calibratorFeatures(calibrator.kind, samples.map((s) => ({ logit: 0, patientId: s.patientId, uglyDuckling: 0, imageName: s.imageName })), data);
  // Images a checkpoint trained on score optimistically: say so, before their AUC is read as a test result.
  const trainedOn = await trainedOnByCheckpoints(checkpoints, samples);
  if (trainedOn) log(trainedOn);
  const views = TTA_VIEWS.slice(0, tta);
  const transforms = views.map(viewTransform);
  log(`predicting ${samples.length} images with ${checkpoints.length} checkpoint(s) x ${views.length} view(s) (${views.join(', ')})`);

  const overrides = scoringOverrides(options);
  const perModel: number[][] = [];
  // patient-embedding: each lesion's ugly-duckling distance under each model, then their mean.
  const wantsEmbeddings = calibrator?.kind === 'patient-embedding';
  const uglySums = new Float64Array(samples.length);
  const perViewLines: string[] = ['image_name,checkpoint,view,score'];
  const started = performance.now();
  let notedContext = false; // once for an ensemble
  for (const [index, file] of checkpoints.entries()) {
    const trainer = await Trainer.load(file, overrides);
    try {
      const contextNote = trainer.patientContextNote(samples, 'scored');
      if (contextNote && !notedContext) log(contextNote);
      notedContext ||= contextNote !== null;
      const onBatch = (scored: number, images: number) => {
        const done = index * images + scored;
        const imagesPerSecond = done / Math.max((performance.now() - started) / 1000, 1e-9);
        onProgress?.({ checkpoint: index + 1, checkpoints: checkpoints.length, scored, images, imagesPerSecond, etaSeconds: (checkpoints.length * images - done) / imagesPerSecond });
      };
      const results = await trainer.evaluateViews(samples, transforms, { imageSize, onBatch, embeddings: wantsEmbeddings });
      if (wantsEmbeddings) uglyDucklingScores(results[0].predictions).forEach((u, i) => (uglySums[i] += u ?? 0));
      const probabilities = samples.map((_, i) => results.reduce((sum, r) => sum + r.predictions[i].probability, 0) / results.length);
      perModel.push(probabilities);
      results.forEach((r, v) => r.predictions.forEach((p) => perViewLines.push([p.imageName, file, views[v], String(p.probability)].map(csvField).join(','))));
      log(`${file}: ${trainer.options.model}, ${imageSize ?? trainer.imageSizeAt(trainer.completedEpochs)}px, epoch ${trainer.completedEpochs}`);
    } finally {
      await trainer.dispose();
    }
  }
  const combined = ensemble === 'rank' && perModel.length > 1 ? perModel.map(normalisedRanks) : perModel;
  const scores = samples.map((_, i) => combined.reduce((sum, m) => sum + m[i], 0) / combined.length);
  const final = calibrator
    ? Array.from(applyCalibrator(calibrator, samples.map((s, i) => ({ logit: logit(scores[i], 1e-12), patientId: s.patientId, uglyDuckling: uglySums[i] / checkpoints.length, imageName: s.imageName })), data))
    : scores;
  if (calibrator) log(`calibrated with ${options.calibrator} (${calibrator.kind}, fitted on ${calibrator.fittedOn.file})`);
  const rows = samples.map((s, i) => ({ imageName: s.imageName, target: final[i] }));
  const labelled = samples.every((s) => s.target !== null);
  const auc = labelled ? rocAucOrNull(samples.map((s) => s.target as number), rows.map((r) => r.target)).auc : null;

  const submission = ['image_name,target', ...rows.map((r) => `${csvField(r.imageName)},${r.target}`)].join('\n') + '\n';
  // Atomically (a crash leaves no half-written submission), never over a file that appeared meanwhile.
  const scored = () => predictionsCsv(samples.map((s, i) => ({ imageName: s.imageName, patientId: s.patientId, target: s.target, logit: logit(final[i], 1e-12), probability: final[i] })), null);
  const written = await writeNewFiles(
    [
      { file: out, data: Buffer.from(submission) },
      ...(perViewCsv ? [{ file: perViewCsv, data: Buffer.from(perViewLines.join('\n') + '\n') }] : []),
      ...(scoresCsv ? [{ file: scoresCsv, data: Buffer.from(scored()) }] : []),
    ],
    CHOOSE_ANOTHER_OUT,
  );
  return { rows, checkpoints, views: [...views], auc, written, calibrator: options.calibrator ?? null };
}
