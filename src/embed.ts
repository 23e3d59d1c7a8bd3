/**
 * `melanoma embed`: every image's embedding under one trained model (the pooled features its
 * classifier reads), for looking at what the model learned (t-SNE/UMAP, nearest neighbours,
 * clusters of errors), and each lesion's distance from the same patient's other lesions in
 * that space: the "ugly duckling" sign measured on the model's features.
 *
 * Written as `embeddings.npy` (float32, images x features: `numpy.load` reads it) and
 * `images.csv` (row, image_name, patient_id, target, score, ugly_duckling[, fold]), rows in the
 * same order. From a cv folder, out of fold: each fold's model embeds its validation images.
 */
import { parse } from 'csv-parse/sync';
import { promises as fsp } from 'fs';
import * as path from 'path';
import type { LesionSample } from './data/types';
import { checkFolderWritable, csvField, makeDirectory, OutputExistsError, writeNewFiles } from './files';
import { readFoldsCsv } from './folds';
import { uglyDucklingScores } from './metrics/ugly-duckling';
import { ScoringOptions, cvFoldCheckpoints, openTestImages, resolveCheckpoints, scoringOverrides } from './predict';
import { Prediction, Trainer } from './train/trainer';

export { uglyDucklingScores };

export const EMBED_FILES = { embeddings: 'embeddings.npy', images: 'images.csv' } as const;

/** A float32 C-order .npy file (format version 1.0) of a rows x columns matrix. */
export function npyFloat32(data: Float32Array, rows: number, columns: number): Buffer {
  if (data.length !== rows * columns) throw new RangeError(`Expected ${rows} x ${columns} = ${rows * columns} values but received ${data.length}`);
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${rows}, ${columns}), }`;
  // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64.
  const unpadded = 10 + dict.length + 1;
  const header = dict + ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const preamble = Buffer.alloc(10);
  preamble.write('\x93NUMPY', 0, 'latin1');
  preamble[6] = 1;
  preamble[7] = 0;
  preamble.writeUInt16LE(header.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.concat([preamble, Buffer.from(header, 'latin1'), body]);
}

/**
 * The ugly_duckling column of an images.csv written by `melanoma embed`, by image name (null
 * where the cell is empty: a patient's only lesion).
 */
export async function readUglyDuckling(file: string): Promise<Map<string, number | null>> {
  const text = await fsp.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new RangeError(e.code === 'ENOENT' ? `${file} does not exist: write it with \`melanoma embed CV_FOLDER --data DATA --out DIR\` (DIR/images.csv)` : `Cannot read ${file}: ${e.message}`);
  });
  const records = parse(text, { columns: true, bom: true, skip_empty_lines: true, trim: true }) as Record<string, string>[];
  if (records.length === 0 || !('image_name' in records[0]) || !('ugly_duckling' in records[0]))
    throw new RangeError(`${file} has no image_name and ugly_duckling columns: pass the images.csv that \`melanoma embed\` wrote`);
  const out = new Map<string, number | null>();
  records.forEach((r, i) => {
    const value = r.ugly_duckling === '' ? null : Number(r.ugly_duckling);
    if (value !== null && !Number.isFinite(value)) throw new RangeError(`${file} row ${i + 1}: ugly_duckling must be a number or empty but is "${r.ugly_duckling}"`);
    out.set(r.image_name, value);
  });
  return out;
}

export interface EmbedOptions extends ScoringOptions {
  /** One checkpoint file or run folder (its best.safetensors), or a cv folder (out of fold). */
  checkpoint: string;
  data: string;
  csv?: string;
  /** A new folder for embeddings.npy and images.csv; refused if it exists. */
  out: string;
  onProgress?: (scored: number, total: number) => void;
}

export interface EmbedResult {
  images: number;
  embeddingSize: number;
  written: string[];
}

/** A cv folder (folds.csv and fold-K/best.safetensors), whose out-of-fold embeddings embed writes. */
async function cvFolds(dir: string): Promise<{ fold: number; checkpoint: string }[] | null> {
  if (!(await fsp.stat(path.join(dir, 'folds.csv')).catch(() => null))) return null;
  const folds = await cvFoldCheckpoints(dir);
  if (folds.length === 0) return null;
  const missing = folds.find((f) => !f.present);
  if (missing) throw new RangeError(`${dir}/fold-${missing.fold} has no best.safetensors: finish the cross-validation (melanoma cv --resume ${dir}) first`);
  return folds;
}

/**
 * One checkpoint embeds every image. A cv folder embeds out of fold instead: each fold's model
 * embeds its own validation images (patients never span folds, so each patient's distances come
 * from one model), which is what `calibrate --kind patient-embedding` fits on.
 */
export async function embedDataset(options: EmbedOptions): Promise<EmbedResult> {
  const { data, csv, out, imageSize, log = () => undefined, onProgress } = options;
  if (await fsp.stat(out).catch(() => null)) throw new OutputExistsError(`${out} already exists and was left untouched: write the embeddings into a new folder`);
  await checkFolderWritable(path.dirname(path.resolve(out))); // before the (long) embedding, not after it
  const folds = await cvFolds(options.checkpoint);
  const samples = await openTestImages(data, csv);
  const overrides = scoringOverrides(options);
  // [checkpoint, its images, their fold] groups, each embedded by its own model.
  const groups: { checkpoint: string; samples: LesionSample[]; fold: number | null }[] = [];
  if (folds) {
    const assignment = new Map((await readFoldsCsv(path.join(options.checkpoint, 'folds.csv'))).map((a) => [a.imageName, a.fold]));
    const unknown = samples.filter((s) => !assignment.has(s.imageName));
    if (unknown.length) throw new RangeError(`${unknown.length} images of ${data} are not in ${options.checkpoint}/folds.csv (e.g. ${unknown[0].imageName}): embed out of fold the data the cv folder trained on`);
    for (const { fold, checkpoint } of folds) groups.push({ checkpoint, fold, samples: samples.filter((s) => assignment.get(s.imageName) === fold) });
    log(`embedding ${samples.length} images out of fold: each by the model of the fold that did not train on it`);
  } else {
    const checkpoints = await resolveCheckpoints([options.checkpoint]);
    if (checkpoints.length !== 1)
      throw new RangeError(`Embeddings come from one model, but ${options.checkpoint} holds ${checkpoints.length} checkpoints (${checkpoints.join(', ')}): pass one of them, or a cv folder for out-of-fold embeddings`);
    groups.push({ checkpoint: checkpoints[0], samples, fold: null });
  }
  const rows: { prediction: Prediction; ugly: number | null; fold: number | null }[] = [];
  let scored = 0;
  for (const group of groups) {
    const trainer = await Trainer.load(group.checkpoint, overrides);
    try {
      const contextNote = trainer.patientContextNote(group.samples, 'embedded');
      if (contextNote) log(contextNote);
      log(`embedding ${group.samples.length} images with ${group.checkpoint} (${trainer.options.model}, ${imageSize ?? trainer.imageSizeAt(trainer.completedEpochs)}px)`);
      const before = scored;
      const predictions = await trainer.embed(group.samples, { imageSize, onBatch: (n) => onProgress?.((scored = before + n), samples.length) });
      const ugly = uglyDucklingScores(predictions);
      predictions.forEach((prediction, i) => rows.push({ prediction, ugly: ugly[i], fold: group.fold }));
    } finally {
      await trainer.dispose();
    }
  }
  const size = rows[0]?.prediction.embedding?.length ?? 0;
  const matrix = new Float32Array(rows.length * size);
  rows.forEach((r, i) => matrix.set(r.prediction.embedding as Float32Array, i * size));
  const lines = [`row,image_name,patient_id,target,score,ugly_duckling${folds ? ',fold' : ''}`];
  rows.forEach(({ prediction: p, ugly, fold }, i) =>
    lines.push(
      [String(i), p.imageName, p.patientId, p.target === null ? '' : String(p.target), String(p.probability), ugly === null ? '' : String(ugly), ...(folds ? [String(fold)] : [])]
        .map(csvField)
        .join(','),
    ),
  );
  await makeDirectory(out);
  const files = [path.join(out, EMBED_FILES.embeddings), path.join(out, EMBED_FILES.images)];
  // Atomically, never over a file that appeared meanwhile.
  const instead = 'write the embeddings into a new folder';
  const written = await writeNewFiles(
    [
      { file: files[0], data: npyFloat32(matrix, rows.length, size) },
      { file: files[1], data: Buffer.from(lines.join('\n') + '\n') },
    ],
    instead,
  );
  return { images: rows.length, embeddingSize: size, written };
}
