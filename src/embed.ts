/**
 * `melanoma embed`: every image's embedding under one trained model (the pooled features its
 * classifier reads), for looking at what the model learned (t-SNE/UMAP, nearest neighbours,
 * clusters of errors), and each lesion's distance from the same patient's other lesions in
 * that space: the "ugly duckling" sign measured on the model's features.
 *
 * Written as `embeddings.npy` (float32, images x features: `numpy.load` reads it) and
 * `images.csv` (row, image_name, patient_id, target, score, ugly_duckling), rows in the same order.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { openTestImages, resolveCheckpoints } from './predict';
import { csvField } from './files';
import type { Device } from './model/config';
import { OutputExistsError } from './cli/evaluate';
import { Prediction, Trainer } from './train/trainer';

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
 * 1 - cosine similarity between each embedding and the mean embedding of the same patient's
 * other images; null for a patient's only image (or an image without a patient id).
 */
export function uglyDucklingScores(predictions: readonly Pick<Prediction, 'patientId' | 'embedding'>[]): (number | null)[] {
  const byPatient = new Map<string, number[]>();
  predictions.forEach((p, i) => {
    if (!p.embedding) throw new RangeError(`Expected an embedding for every image but image ${i + 1} has none`);
    if (!p.patientId) return;
    const members = byPatient.get(p.patientId);
    if (members) members.push(i);
    else byPatient.set(p.patientId, [i]);
  });
  return predictions.map((p, i) => {
    const members = p.patientId ? byPatient.get(p.patientId)! : [i];
    if (members.length < 2) return null;
    const e = p.embedding as Float32Array;
    // The others' mean, without this image.
    const mean = new Float64Array(e.length);
    for (const j of members) {
      if (j === i) continue;
      const other = predictions[j].embedding as Float32Array;
      for (let k = 0; k < e.length; k++) mean[k] += other[k] / (members.length - 1);
    }
    let dot = 0, ee = 0, mm = 0;
    for (let k = 0; k < e.length; k++) {
      dot += e[k] * mean[k];
      ee += e[k] * e[k];
      mm += mean[k] * mean[k];
    }
    return ee === 0 || mm === 0 ? 1 : 1 - dot / Math.sqrt(ee * mm);
  });
}

export interface EmbedOptions {
  /** One checkpoint file or run folder (its best.safetensors). */
  checkpoint: string;
  data: string;
  csv?: string;
  /** A new folder for embeddings.npy and images.csv; refused if it exists. */
  out: string;
  imageSize?: number;
  batchSize?: number;
  workers?: number;
  device?: Device | 'auto';
  log?: (line: string) => void;
  onProgress?: (scored: number, total: number) => void;
}

export interface EmbedResult {
  images: number;
  embeddingSize: number;
  written: string[];
}

export async function embedDataset(options: EmbedOptions): Promise<EmbedResult> {
  const { data, csv, out, imageSize, batchSize, workers, device, log = () => undefined, onProgress } = options;
  if (await fsp.stat(out).catch(() => null)) throw new OutputExistsError(`${out} already exists and was left untouched: write the embeddings into a new folder`);
  const checkpoints = await resolveCheckpoints([options.checkpoint]);
  if (checkpoints.length !== 1)
    throw new RangeError(`Embeddings come from one model, but ${options.checkpoint} holds ${checkpoints.length} checkpoints (${checkpoints.join(', ')}): pass one of them`);
  const samples = await openTestImages(data, csv);
  const overrides = Object.fromEntries(Object.entries({ batchSize, workers, device }).filter(([, v]) => v !== undefined));
  const trainer = await Trainer.load(checkpoints[0], overrides);
  let predictions: Prediction[];
  try {
    log(`embedding ${samples.length} images with ${checkpoints[0]} (${trainer.options.model}, ${imageSize ?? trainer.imageSizeAt(trainer.completedEpochs)}px)`);
    predictions = await trainer.embed(samples, { imageSize, onBatch: onProgress });
  } finally {
    await trainer.dispose();
  }
  const size = predictions[0]?.embedding?.length ?? 0;
  const matrix = new Float32Array(predictions.length * size);
  predictions.forEach((p, i) => matrix.set(p.embedding as Float32Array, i * size));
  const ugly = uglyDucklingScores(predictions);
  const lines = ['row,image_name,patient_id,target,score,ugly_duckling'];
  predictions.forEach((p, i) =>
    lines.push([String(i), p.imageName, p.patientId, p.target === null ? '' : String(p.target), String(p.probability), ugly[i] === null ? '' : String(ugly[i])].map(csvField).join(',')),
  );
  await fsp.mkdir(out, { recursive: true });
  const files = [path.join(out, EMBED_FILES.embeddings), path.join(out, EMBED_FILES.images)];
  // 'wx': never replace a file that appeared meanwhile.
  await fsp.writeFile(files[0], npyFloat32(matrix, predictions.length, size), { flag: 'wx' });
  await fsp.writeFile(files[1], lines.join('\n') + '\n', { flag: 'wx' });
  return { images: predictions.length, embeddingSize: size, written: files };
}
