/**
 * `melanoma convert`: any dataset this package reads (ISIC 2020's JPEG folder with train.csv,
 * TFRecords, a bare JPEG folder) into SIIM-ISIC TFRecords of square JPEGs at one size.
 *
 * The ISIC 2020 JPEGs are up to 6000 x 4000 px: decoding them is most of an epoch's CPU time.
 * Converted once at (or above) the training size, every later epoch decodes small JPEGs instead.
 * Images are resized exactly as the loader resizes them (src/data/images.ts), so training from
 * a set converted at the training size sees the same pixels, up to the JPEG re-encoding.
 *
 * Files are patient-grouped and stratified (every patient in one file, melanomas spread evenly),
 * as the community's resized SIIM-ISIC sets are, and named `trainNN-COUNT.tfrec` (`testNN-...`
 * for a set without targets). The folder is built under a temporary name and renamed at the end,
 * so an interrupted conversion never looks finished, and an existing folder is never touched.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { makeDirectory, makeStagingFolder } from '../files';
import { stratifiedGroupKFold } from '../folds';
import { forEachConcurrently, ImageProgress, progressCounter } from './concurrency';
import { DataError } from './errors';
import { assessImageContent, describeContentDefect } from './image-content';
import { ImageBytesReader, ResizeFit, describeSource, resizeToJpeg } from './images';
import { openDataset } from './isic';
import { FeatureInput, encodeExample, floatList, writeTfRecordFile } from './tfrecord';
import type { LesionSample } from './types';

export interface ConvertOptions {
  /** Source: a folder of TFRecords, a JPEG folder with train.csv, or a CSV. */
  data: string;
  csv?: string;
  /** New folder for the TFRecords; refused if it exists. */
  out: string;
  /** Square size in pixels. */
  size: number;
  fit?: ResizeFit;
  /** TFRecord files (default 15, or fewer when there are fewer patients). */
  files?: number;
  /** JPEG quality, 1-100 (default 95). */
  quality?: number;
  /** Seed of the patient-to-file assignment (default 42). */
  seed?: number;
  /** Images resized at once (default: CPU cores). */
  workers?: number;
  /** Leave out images that cannot be read or decoded, listing them in manifest.json (default: stop at the first). */
  skipBadImages?: boolean;
  /**
   * Leave out images that decode but hold no picture (blank, or streaked: image-content.ts).
   * Either way they are listed in manifest.json under `degenerate`.
   */
  skipDegenerate?: boolean;
  log?: (line: string) => void;
  onProgress?: (progress: ImageProgress) => void;
  /** Aborting stops the conversion after the images in flight; the partial folder is removed (ConvertInterruptedError). */
  signal?: AbortSignal;
}

/** The conversion was stopped by its signal (Ctrl-C); nothing was left behind. */
export class ConvertInterruptedError extends Error {
  override name = 'ConvertInterruptedError';
}

export interface ConvertedFile {
  file: string;
  images: number;
  melanomas: number;
  patients: number;
}

export interface ConvertResult {
  out: string;
  files: ConvertedFile[];
  images: number;
  skipped: { imageName: string; source: string; reason: string }[];
  /** Images that hold no picture; left out with skipDegenerate, else written and only listed. */
  degenerate: { imageName: string; source: string; detail: string }[];
}

export const CONVERT_MANIFEST = 'manifest.json';

function checkInteger(value: number, name: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`Expected integer between ${min} and ${max} for ${name} but received ${String(value)}`);
  return value;
}

/** An integer code stays an int64 (as in the SIIM-ISIC TFRecords); text stays text. */
/** @internal */
export function codeOrText(value: string): FeatureInput {
  // "0012" stays text: as a number it would read back as "12".
  return /^(0|-?[1-9]\d*)$/.test(value) && Number.isSafeInteger(Number(value)) ? Number(value) : value;
}

/** The SIIM-ISIC features of one sample around its new JPEG; unknown values are left out. */
function exampleOf(sample: LesionSample, jpeg: Buffer): Buffer {
  const features: Record<string, FeatureInput> = { image: jpeg, image_name: sample.imageName, patient_id: codeOrText(sample.patientId) };
  if (sample.sex !== null) features.sex = codeOrText(sample.sex);
  if (sample.ageApprox !== null) features.age_approx = Number.isInteger(sample.ageApprox) ? sample.ageApprox : floatList(sample.ageApprox);
  if (sample.anatomSite !== null) features.anatom_site_general_challenge = codeOrText(sample.anatomSite);
  if (sample.diagnosis !== null) features.diagnosis = codeOrText(sample.diagnosis);
  if (sample.target !== null) features.target = sample.target;
  return encodeExample(features);
}

export async function convertDataset(options: ConvertOptions): Promise<ConvertResult> {
  const { data, csv, out, fit = 'fill', skipBadImages = false, skipDegenerate = false, log = () => undefined, onProgress, signal } = options;
  const size = checkInteger(options.size, 'size', 32, 4096);
  const quality = checkInteger(options.quality ?? 95, 'quality', 1, 100);
  const seed = checkInteger(options.seed ?? 42, 'seed', 0, 0xffffffff);
  const workers = checkInteger(options.workers ?? os.availableParallelism(), 'workers', 1, 1024);
  if (fit !== 'fill' && fit !== 'cover') throw new RangeError(`Expected 'fill' or 'cover' for fit but received '${String(fit)}'`);
  if (await fsp.stat(out).catch(() => null)) throw new RangeError(`${out} already exists and was left untouched: convert into a new folder`);

  const { samples, format } = await openDataset(data, { csv });
  if (samples.length === 0) throw new DataError('ERR_DATASET_EMPTY', `${data} holds no images to convert`, { file: data });
  const patients = new Set(samples.map((s) => s.patientId)).size;
  const fileCount = checkInteger(Math.min(options.files ?? 15, patients), 'files', 1, 10000);
  const prefix = samples.some((s) => s.target !== null) ? 'train' : 'test';
  // k = 1 is one file with everything; otherwise patient-grouped, stratified files.
  const fileOf = fileCount === 1 ? samples.map(() => 0) : stratifiedGroupKFold(samples, fileCount, seed).map((a) => a.fold);
  const capped = options.files !== undefined && options.files > patients ? ` (--files ${options.files} is more than the ${patients} patients, and a patient is never split)` : '';
  log(`converting ${samples.length} images (${format}, ${patients} patients) from ${data} to ${fileCount} TFRecord file(s)${capped} of ${size}x${size} JPEGs (quality ${quality}, fit ${fit}) in ${out}`);
  // Wide enough that the names sort in order past 100 files.
  const digits = Math.max(2, String(fileCount - 1).length);

  const staging = await makeStagingFolder(out, 'an interrupted conversion', log);
  const reader = new ImageBytesReader();
  const skipped: ConvertResult['skipped'] = [];
  const degenerate: ConvertResult['degenerate'] = [];
  const files: ConvertedFile[] = [];
  const finishedOne = progressCounter(samples.length, onProgress);
  try {
    for (let f = 0; f < fileCount; f++) {
      const members = samples.filter((_, i) => fileOf[i] === f);
      const records: (Buffer | null)[] = new Array(members.length).fill(null);
      // `workers` resizes in flight; records keep the samples' order. After one failure the
      // others stop taking images, and all have stopped before the staging folder is removed
      // and the file handles are closed.
      await forEachConcurrently(members.length, workers, async (i) => {
        if (signal?.aborted) throw new ConvertInterruptedError(`the conversion into ${out} was interrupted: nothing was written (the partial folder was removed); run it again to convert`);
        const sample = members[i];
        try {
          const bytes = await reader.read(sample.image, sample.imageName);
          const jpeg = await resizeToJpeg(bytes, { size, fit, quality, imageName: sample.imageName, source: sample.image });
          // The converted image is checked: it is small to decode, and it is what training sees.
          const content = await assessImageContent(jpeg, sample.imageName);
          if (content.defect) degenerate.push({ imageName: sample.imageName, source: describeSource(sample.image), detail: describeContentDefect(content) });
          if (!content.defect || !skipDegenerate) records[i] = exampleOf(sample, jpeg);
        } catch (err) {
          if (!skipBadImages || !(err instanceof DataError)) throw err;
          skipped.push({ imageName: sample.imageName, source: describeSource(sample.image), reason: err.message });
        }
        finishedOne();
      });
      const kept = members.filter((_, i) => records[i] !== null);
      if (kept.length === 0) {
        log(`every image of file ${f + 1} of ${fileCount} was left out: no file written for it`);
        continue;
      }
      // Numbered by the files written, so the names run on without gaps.
      const name = `${prefix}${String(files.length).padStart(digits, '0')}-${kept.length}.tfrec`;
      await writeTfRecordFile(path.join(staging, name), records.filter((r): r is Buffer => r !== null));
      files.push({ file: name, images: kept.length, melanomas: kept.filter((s) => s.target === 1).length, patients: new Set(kept.map((s) => s.patientId)).size });
      log(`${name}: ${kept.length} images, ${files.at(-1)!.melanomas} melanoma, ${files.at(-1)!.patients} patients`);
    }
    const images = files.reduce((sum, f) => sum + f.images, 0);
    // Workers finish in any order: by name, the manifest is the same from run to run.
    skipped.sort((a, b) => a.imageName.localeCompare(b.imageName));
    degenerate.sort((a, b) => a.imageName.localeCompare(b.imageName));
    const manifest = { source: data, csv: csv ?? null, sourceFormat: format, size, fit, quality, seed, images, files, skipped, degenerate, skipDegenerate, convertedAt: new Date().toISOString() };
    await fsp.writeFile(path.join(staging, CONVERT_MANIFEST), JSON.stringify(manifest, null, 2) + '\n');
    await makeDirectory(path.dirname(path.resolve(out)));
    // rename(2) onto an existing non-empty folder fails, so a folder created meanwhile survives.
    await fsp.rename(staging, out);
    return { out, files, images, skipped, degenerate };
  } catch (err) {
    await fsp.rm(staging, { recursive: true, force: true });
    throw err;
  } finally {
    await reader.close();
  }
}
