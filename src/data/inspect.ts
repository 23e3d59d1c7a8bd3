/**
 * What a dataset holds, before training on it: counts per file and fold, class balance,
 * patients, missing metadata, sampled image sizes, and the corrupt records or images found.
 * Corrupt files are reported, not thrown, so one bad file does not hide the state of the rest.
 */
import * as path from 'path';
import { stratifiedGroupKFold } from '../folds';
import { DEFAULT_OPTIONS } from '../model/config';
import { DataError } from './errors';
import { createHash } from 'crypto';
import { ImageContentDefect, assessImageContent, csvFlag, describeContentDefect, findSamePictures } from './image-content';
import { ImageBytesReader, describeSource, jpegMetadata } from './images';
import { IsicDataset, listTfRecordFiles, openDataset, readTfRecordSamples } from './isic';
import { patientKey } from './patients';
import { seededSample } from './random';
import { LesionSample } from './types';
import { promises as fsp } from 'fs';
import * as os from 'os';
import { forEachConcurrently, ImageProgress, progressCounter } from './concurrency';

export interface InspectOptions {
  /** CSV joined on image_name (TFRecord sets). */
  csv?: string;
  /** Folds to report (default 5): the patient-level folds `train` and `cv` make with the same seed. */
  folds?: number;
  /** Images whose size and content are checked (default 20, seeded pick; Infinity = every image). */
  sampleImages?: number;
  verifyCrc?: boolean;
  /** Seed of the folds and of the image sample (default 42, training's default seed: the folds shown are the ones it trains on). */
  seed?: number;
  /** Sampled images read and checked at once (default: CPU cores). */
  workers?: number;
  /** Called as each sampled image is checked: `--sample-images all` on ISIC 2020 is minutes. */
  onProgress?: (progress: ImageProgress) => void;
}

export interface SamePictureMember {
  imageName: string;
  file: string;
  patientId: string;
  target: 0 | 1 | null;
}

export interface CountSummary {
  images: number;
  positives: number;
  negatives: number;
  /** Samples without a target (test sets). */
  unlabeled: number;
  patients: number;
}

export interface DatasetInspection extends CountSummary {
  source: string;
  /** The CSV joined on image_name, if one was given. */
  csv: string | null;
  format: 'tfrecord' | 'jpeg';
  positiveRate: number;
  /** Negatives per positive (the usual positive-class weight). */
  negativesPerPositive: number | null;
  imagesPerPatient: { min: number; median: number; max: number; mean: number };
  files: ({ file: string } & CountSummary)[];
  foldKind: 'patient' | 'none';
  folds: ({ fold: number } & CountSummary)[];
  /** Samples missing each metadata field. */
  missing: { patientId: number; sex: number; ageApprox: number; anatomSite: number; diagnosis: number; target: number };
  droppedDuplicates: number;
  /** TFRecord images without a row in the joined CSV (they keep the files' integer codes). */
  unmatchedInCsv: number;
  imageSizes: { sampled: number; sizes: { width: number; height: number; format: string; count: number }[] };
  /** Sampled images that decode but hold no picture (image-content.ts): blank or streaked. */
  degenerate: { imageName: string; file: string; defect: ImageContentDefect; detail: string }[];
  /**
   * Pairs of images that show the same picture (identical files, or resized or re-encoded
   * copies); null unless every image was checked (sampleImages Infinity), as pairs need them all.
   * Blank and streaked images are left out of it.
   */
  samePicture: { images: [SamePictureMember, SamePictureMember]; identicalFiles: boolean; distance: number }[] | null;
  /** Corrupt files (the whole file is skipped) and undecodable sampled images. */
  corrupt: { file: string; code: string; message: string }[];
}

function summarize(samples: LesionSample[]): CountSummary {
  const positives = samples.filter((s) => s.target === 1).length;
  const negatives = samples.filter((s) => s.target === 0).length;
  // Counted as the folds group them: an image without a patient id is a patient of its own.
  const patients = new Set(samples.map(patientKey)).size;
  return { images: samples.length, positives, negatives, unlabeled: samples.length - positives - negatives, patients };
}

export async function inspectDataset(source: string, options: InspectOptions = {}): Promise<DatasetInspection> {
  const k = options.folds ?? 5;
  const sampleImages = options.sampleImages ?? 20;
  const seed = options.seed ?? DEFAULT_OPTIONS.seed;
  if (!(Number.isInteger(sampleImages) || sampleImages === Infinity) || sampleImages < 0)
    throw new RangeError(`Expected integer >= 0 or Infinity for sampleImages but received ${sampleImages}`);
  const corrupt: DatasetInspection['corrupt'] = [];

  // TFRecord sets file by file, so a corrupt file is listed and the others still counted.
  let dataset: IsicDataset;
  const st = await fsp.stat(source).catch(() => null);
  // One .tfrec file given alone is inspected as a set of one: its corruption is reported too.
  const tfrecords = st?.isDirectory() ? await listTfRecordFiles(source) : st?.isFile() && source.endsWith('.tfrec') ? [source] : [];
  if (tfrecords.length > 0 && !options.csv) {
    const files: IsicDataset['files'] = [];
    let samples: LesionSample[] = [];
    for (const file of tfrecords) {
      try {
        const s = await readTfRecordSamples(file, { verifyCrc: options.verifyCrc ?? true });
        files.push({ file, records: s.length });
        samples = samples.concat(s);
      } catch (err) {
        if (!(err instanceof DataError)) throw err;
        corrupt.push({ file, code: err.code, message: err.message });
      }
    }
    dataset = { format: 'tfrecord', source, samples, files, csv: null, droppedDuplicates: 0, unmatchedInCsv: 0 };
  } else {
    dataset = await openDataset(source, { csv: options.csv, verifyCrc: options.verifyCrc });
  }
  const { samples } = dataset;
  const totals = summarize(samples);

  const perPatient = new Map<string, number>();
  samples.forEach((s, i) => {
    const key = patientKey(s, i);
    perPatient.set(key, (perPatient.get(key) ?? 0) + 1);
  });
  const counts = [...perPatient.values()].sort((a, b) => a - b);

  let folds: DatasetInspection['folds'] = [];
  if (k >= 2 && samples.length > 0) {
    // The folds training makes (run.ts openRunData), not the files' own: `train --fold k` validates on fold k here.
    if (totals.patients >= k) {
      const assignment = stratifiedGroupKFold(samples, k, seed);
      folds = Array.from({ length: k }, (_, fold) => ({ fold, ...summarize(samples.filter((_, i) => assignment[i].fold === fold)) }));
    }
  }

  // A seeded sample: its sizes from the JPEG headers, its content from a small decode. Checked
  // `workers` at once; each image's outcome is kept at its place, so the report's order does not
  // depend on which decode finished first.
  const picked = seededSample(samples, sampleImages, seed);
  type Checked =
    | { kind: 'image'; sample: LesionSample; size: { width: number; height: number; format: string }; content: Awaited<ReturnType<typeof assessImageContent>>; digest: string }
    | { kind: 'corrupt'; entry: DatasetInspection['corrupt'][number] };
  const checked: Checked[] = new Array(picked.length);
  const reader = new ImageBytesReader();
  const finishedOne = progressCounter(picked.length, options.onProgress);
  try {
    await forEachConcurrently(picked.length, options.workers ?? os.availableParallelism(), async (i) => {
      const s = picked[i];
      try {
        const bytes = await reader.read(s.image, s.imageName);
        const meta = await jpegMetadata(bytes, s.imageName, s.image);
        const size = { width: meta.width ?? 0, height: meta.height ?? 0, format: 'jpeg' }; // jpegMetadata refused anything else
        const content = await assessImageContent(bytes, s.imageName, s.image);
        checked[i] = { kind: 'image', sample: s, size, content, digest: createHash('sha1').update(bytes).digest('hex') };
      } catch (err) {
        checked[i] = {
          kind: 'corrupt',
          // The loader's own words (they name the image); anything else with the image's name.
          entry: { file: describeSource(s.image), ...(err instanceof DataError ? { code: err.code, message: err.message } : { code: 'ERR_IMAGE_DECODE', message: `${s.imageName}: ${(err as Error).message}` }) },
        };
      }
      finishedOne();
    });
  } finally {
    await reader.close();
  }
  const degenerate: DatasetInspection['degenerate'] = [];
  const comparable: { sample: LesionSample; digest: string; signature: Float32Array }[] = [];
  const sizes = new Map<string, { width: number; height: number; format: string; count: number }>();
  for (const c of checked) {
    if (c.kind === 'corrupt') {
      corrupt.push(c.entry);
      continue;
    }
    const key = `${c.size.width}x${c.size.height}/${c.size.format}`;
    const entry = sizes.get(key) ?? { ...c.size, count: 0 };
    entry.count++;
    sizes.set(key, entry);
    const { sample: s, content } = c;
    if (content.defect) degenerate.push({ imageName: s.imageName, file: describeSource(s.image), defect: content.defect, detail: describeContentDefect(content) });
    else comparable.push({ sample: s, digest: c.digest, signature: content.signature });
  }

  return {
    source,
    csv: options.csv ?? null,
    format: dataset.format,
    ...totals,
    positiveRate: totals.positives + totals.negatives ? totals.positives / (totals.positives + totals.negatives) : 0,
    negativesPerPositive: totals.positives ? totals.negatives / totals.positives : null,
    imagesPerPatient: {
      min: counts[0] ?? 0,
      median: counts.length ? counts[Math.floor(counts.length / 2)] : 0,
      max: counts[counts.length - 1] ?? 0,
      mean: counts.length ? samples.length / counts.length : 0,
    },
    files: [...samplesByFile(samples)].map(([file, s]) => ({ file, ...summarize(s) })),
    foldKind: folds.length ? 'patient' : 'none',
    folds,
    missing: {
      patientId: samples.filter((s) => s.patientId === '').length,
      sex: samples.filter((s) => s.sex === null).length,
      ageApprox: samples.filter((s) => s.ageApprox === null).length,
      anatomSite: samples.filter((s) => s.anatomSite === null).length,
      diagnosis: samples.filter((s) => s.diagnosis === null).length,
      target: totals.unlabeled,
    },
    droppedDuplicates: dataset.droppedDuplicates,
    unmatchedInCsv: dataset.unmatchedInCsv,
    imageSizes: { sampled: picked.length, sizes: [...sizes.values()].sort((a, b) => b.count - a.count) },
    degenerate,
    samePicture: picked.length === samples.length ? samePictures(inDatasetOrder(comparable, samples)) : null,
    corrupt,
  };
}

function samplesByFile(samples: readonly LesionSample[]): Map<string, LesionSample[]> {
  const byFile = new Map<string, LesionSample[]>();
  for (const s of samples) {
    if (s.image.kind !== 'tfrecord') continue;
    const inFile = byFile.get(s.image.file);
    if (inFile) inFile.push(s);
    else byFile.set(s.image.file, [s]);
  }
  return byFile;
}

/** `checked` in the order of `samples`, so that what is reported from them does not depend on the sample's seed. */
function inDatasetOrder<T extends { sample: LesionSample }>(checked: readonly T[], samples: readonly LesionSample[]): T[] {
  const position = new Map(samples.map((s, i) => [s, i]));
  return [...checked].sort((x, y) => position.get(x.sample)! - position.get(y.sample)!);
}

function samePictures(images: { sample: LesionSample; digest: string; signature: Float32Array }[]): NonNullable<DatasetInspection['samePicture']> {
  const member = ({ sample: s }: (typeof images)[number]): SamePictureMember => ({ imageName: s.imageName, file: describeSource(s.image), patientId: s.patientId, target: s.target });
  return findSamePictures(images).map(({ a, b, identicalFiles, distance }) => ({ images: [member(images[a]), member(images[b])], identicalFiles, distance }));
}

/** A plain-text report of an inspection (what the `inspect` command prints). */
export function formatInspection(r: DatasetInspection): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const row = (name: string, c: CountSummary) =>
    `  ${name.padEnd(28)} ${String(c.images).padStart(7)} images ${String(c.positives).padStart(5)} pos ${String(c.negatives).padStart(6)} neg ${String(c.patients).padStart(6)} patients`;
  const lines = [
    `${r.source} (${r.format})`,
    `  ${r.images} images, ${r.patients} patients, ${r.positives} positive / ${r.negatives} negative / ${r.unlabeled} unlabeled ` +
      `(${pct(r.positiveRate)} positive${r.negativesPerPositive !== null ? `, ${r.negativesPerPositive.toFixed(2)} negatives per positive` : ''})`,
    `  images per patient: min ${r.imagesPerPatient.min}, median ${r.imagesPerPatient.median}, max ${r.imagesPerPatient.max}, mean ${r.imagesPerPatient.mean.toFixed(2)}`,
    `  missing: patient_id ${r.missing.patientId}, sex ${r.missing.sex}, age ${r.missing.ageApprox}, site ${r.missing.anatomSite}, diagnosis ${r.missing.diagnosis}, target ${r.missing.target}`,
  ];
  if (r.droppedDuplicates) lines.push(`  dropped ${r.droppedDuplicates} duplicate rows (tfrecord == -1)`);
  if (r.unmatchedInCsv) lines.push(`  ${r.unmatchedInCsv} of ${r.images} images have no row in ${r.csv}: they keep the TFRecords' integer codes`);
  if (r.files.length) lines.push('files:', ...r.files.map((f) => row(path.basename(f.file), f)));
  if (r.folds.length) lines.push(`folds (${r.foldKind}):`, ...r.folds.map((f) => row(`fold ${f.fold}`, f)));
  lines.push(
    `image sizes (${r.imageSizes.sampled} sampled):`,
    ...r.imageSizes.sizes.map((s) => `  ${s.width}x${s.height} ${s.format}: ${s.count}`),
  );
  // Most sampled images larger than 1024 px: every epoch would spend its time decoding them.
  const large = r.imageSizes.sizes.filter((s) => Math.max(s.width, s.height) > 1024).reduce((n, s) => n + s.count, 0);
  if (large > r.imageSizes.sampled / 2)
    lines.push(`  hint: ${large} of ${r.imageSizes.sampled} sampled images are over 1024 px; decoding them will dominate every epoch. Convert once: melanoma convert --data ${r.source}${csvFlag(r.csv)} --size 512 --out NEW_FOLDER`);
  lines.push(...formatDegenerate(r), ...formatSamePicture(r));
  lines.push(r.corrupt.length ? `corrupt (${r.corrupt.length}):` : 'corrupt: none found', ...r.corrupt.map((c) => `  ${c.code} ${c.message}`));
  return lines.join('\n');
}

/** Shown in full up to this many; --json lists every one. */
const LISTED_IN_FULL = 10;

function formatDegenerate(r: DatasetInspection): string[] {
  const { sampled } = r.imageSizes;
  if (!sampled) return [];
  const every = sampled === r.images;
  if (!r.degenerate.length) return [`image content (${every ? 'every image' : `${sampled} sampled`}): no blank or streaked image`];
  const share = r.degenerate.length / sampled;
  const lines = [
    `image content (${every ? 'every image' : `${sampled} sampled`}): ${r.degenerate.length} of ${sampled} (${(100 * share).toFixed(1)}%) decode but hold no picture of a lesion:`,
    ...r.degenerate.slice(0, LISTED_IN_FULL).map((d) => `  ${d.imageName} in ${path.basename(d.file)}: ${d.detail}`),
  ];
  if (r.degenerate.length > LISTED_IN_FULL) lines.push(`  ... and ${r.degenerate.length - LISTED_IN_FULL} more (--json lists them all)`);
  const checkAll = every ? '' : ` Check every image: melanoma inspect ${r.source}${csvFlag(r.csv)} --sample-images all.`;
  lines.push(`  hint: they show no lesion shape or border, at most one line's colours: look at a few.${checkAll} If they are broken exports, leave them out: melanoma convert --data ${r.source}${csvFlag(r.csv)} --out NEW_FOLDER --size SIZE --skip-degenerate`);
  return lines;
}

function formatSamePicture(r: DatasetInspection): string[] {
  if (!r.imageSizes.sampled) return [];
  if (!r.samePicture) return [`same picture twice: not checked (melanoma inspect ${r.source}${csvFlag(r.csv)} --sample-images all compares every image)`];
  if (!r.samePicture.length) return ['same picture twice (every image): none found'];
  const lines = [`same picture twice (every image): ${r.samePicture.length} pair(s):`];
  for (const p of r.samePicture.slice(0, LISTED_IN_FULL)) {
    const [a, b] = p.images;
    const how = p.identicalFiles ? 'identical files' : `resized or re-encoded copies (distance ${p.distance.toFixed(3)})`;
    const patients = a.patientId === b.patientId ? `one patient, ${a.patientId}` : `patients ${a.patientId} and ${b.patientId}`;
    const targets = a.target === b.target ? `target ${a.target ?? 'none'}` : `targets ${a.target ?? 'none'} and ${b.target ?? 'none'} (a label conflict)`;
    lines.push(`  ${a.imageName} and ${b.imageName}: ${how}; ${patients}; ${targets}`);
  }
  if (r.samePicture.length > LISTED_IN_FULL) lines.push(`  ... and ${r.samePicture.length - LISTED_IN_FULL} more (--json lists them all)`);
  if (r.samePicture.some((p) => p.images[0].patientId !== p.images[1].patientId))
    lines.push(
      '  hint: under two patient ids, patient-level folds can put one copy in training and the other in validation, which inflates the validation AUC: ' +
        'give each pair one patient_id in train.csv (pass it with --csv for a TFRecord set), or set the tfrecord column of one copy to -1 to drop it',
    );
  return lines;
}
