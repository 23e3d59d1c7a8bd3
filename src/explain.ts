/**
 * `melanoma explain`: where the model looked. For chosen images (by name, or the hardest cases
 * of an evaluation.json) it writes, per image, a PNG of the image as the model saw it beside its
 * Grad-CAM map, and an index.html gallery with the names, targets and scores. Looking at the
 * missed melanomas this way shows whether the model attends to the lesion, to a ruler or a
 * dark corner, or to nothing in particular.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { checkFolderWritable, makeDirectory, OutputExistsError } from './files';
import { ScoringOptions, openTestImages, resolveCheckpoints, scoringOverrides } from './predict';
import { escapeHtml } from './report/svg';
import { GradCamPrediction, Trainer } from './train/trainer';

export interface ExplainOptions extends ScoringOptions {
  /** One checkpoint file or run folder (its best.safetensors). */
  checkpoint: string;
  data: string;
  csv?: string;
  /** Images to explain, by image_name. */
  images?: readonly string[];
  /** Or: an evaluation.json whose hardest cases (missed melanomas, false alarms) to explain. */
  fromEvaluation?: string;
  /** A new folder for the PNGs and index.html; refused if it exists. */
  out: string;
}

export interface ExplainResult {
  images: { imageName: string; target: 0 | 1 | null; probability: number; file: string }[];
  index: string;
}

const TOWARDS = [220, 40, 40] as const; // red: pushes towards melanoma
const AWAY = [40, 90, 220] as const; // blue: pushes away from it

/**
 * The colour and opacity of a signed map value t in [-1, 1]: red towards melanoma, blue away,
 * more opaque the stronger; 0 leaves the image as it is.
 */
export function evidenceColour(t: number): { rgb: readonly [number, number, number]; alpha: number } {
  const x = Math.min(1, Math.max(-1, t));
  return { rgb: x >= 0 ? TOWARDS : AWAY, alpha: 0.7 * Math.abs(x) };
}

/**
 * The image beside its Grad-CAM map blended over it (2 x size wide). The map is signed (evidence
 * for and against melanoma), scaled to its largest magnitude, and upsampled with a smooth kernel:
 * the last feature map is coarse (8 x 8 at 256 px).
 */
export async function gradCamPng(p: GradCamPrediction): Promise<Buffer> {
  const size = p.imageSize;
  const largest = p.map.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  // Signed values as bytes around 128, so sharp can upsample them.
  const encoded = Buffer.from(Array.from(p.map, (v) => (largest > 0 ? Math.round(128 + 127 * (v / largest)) : 128)));
  const upsampled = await sharp(encoded, { raw: { width: p.mapWidth, height: p.mapHeight, channels: 1 } })
    .resize(size, size, { kernel: 'cubic', fit: 'fill' })
    .toColourspace('b-w') // sharp would otherwise hand back three channels
    .raw()
    .toBuffer();
  const canvas = Buffer.alloc(2 * size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const src = (y * size + x) * 3;
      const left = (y * 2 * size + x) * 3;
      const right = left + size * 3;
      const { rgb, alpha } = evidenceColour((upsampled[y * size + x] - 128) / 127);
      for (let c = 0; c < 3; c++) {
        canvas[left + c] = p.image[src + c];
        canvas[right + c] = Math.round((1 - alpha) * p.image[src + c] + alpha * rgb[c]);
      }
    }
  }
  return sharp(canvas, { raw: { width: 2 * size, height: size, channels: 3 } }).png().toBuffer();
}

async function namesFromEvaluation(file: string): Promise<string[]> {
  const text = await fsp.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new RangeError(e.code === 'ENOENT' ? `${file} does not exist: pass the evaluation.json of a run folder (or of one cv fold), or one written by \`melanoma evaluate --out\`` : `Cannot read ${file}: ${e.message}`);
  });
  let evaluation: { unit?: string; counts?: { folds: number | null }; hardestCases?: { missedMelanomas: { id: string }[]; falseAlarms: { id: string }[] } };
  try {
    evaluation = JSON.parse(text);
  } catch (e) {
    throw new RangeError(`${file} is not valid JSON (${(e as Error).message}): pass an evaluation.json`);
  }
  if (!evaluation.hardestCases) throw new RangeError(`${file} has no hardestCases: it was written by an older version; run \`melanoma evaluate\` on its predictions again`);
  // A pooled cv evaluation lists cases of every fold, and one fold's model trained on most of them.
  if ((evaluation.counts?.folds ?? 1) > 1)
    throw new RangeError(`${file} pools ${evaluation.counts!.folds} folds: explain one fold's cases with that fold's model (--hardest runs/CV/fold-K/evaluation.json with runs/CV/fold-K)`);
  if (evaluation.unit === 'patient') throw new RangeError(`${file} evaluates patients, not images: evaluate the predictions per image (--patient-aggregation none) to explain images`);
  return [...evaluation.hardestCases.missedMelanomas, ...evaluation.hardestCases.falseAlarms].map((c) => c.id);
}

export async function explainImages(options: ExplainOptions): Promise<ExplainResult> {
  const { data, csv, out, imageSize, log = () => undefined } = options;
  if (await fsp.stat(out).catch(() => null)) throw new OutputExistsError(`${out} already exists and was left untouched: write the explanations into a new folder`);
  await checkFolderWritable(path.dirname(path.resolve(out))); // before the model runs, not after it
  const wanted = options.fromEvaluation ? await namesFromEvaluation(options.fromEvaluation) : [...(options.images ?? [])];
  if (wanted.length === 0) throw new RangeError('Expected images to explain: pass --images NAME,... or --hardest evaluation.json');
  const checkpoints = await resolveCheckpoints([options.checkpoint]);
  if (checkpoints.length !== 1)
    throw new RangeError(`Explanations come from one model, but ${options.checkpoint} holds ${checkpoints.length} checkpoints (${checkpoints.join(', ')}): pass one of them`);
  const all = await openTestImages(data, csv);
  const byName = new Map(all.map((s) => [s.imageName, s]));
  const missing = wanted.filter((name) => !byName.has(name));
  if (missing.length) throw new RangeError(`${missing.length} of the ${wanted.length} images are not in ${data}: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`);
  const samples = [...new Set(wanted)].map((name) => byName.get(name)!);

  const overrides = scoringOverrides(options);
  const trainer = await Trainer.load(checkpoints[0], overrides);
  let explained: GradCamPrediction[];
  try {
    log(`explaining ${samples.length} images with ${checkpoints[0]} (${trainer.options.model}, ${imageSize ?? trainer.imageSizeAt(trainer.completedEpochs)}px)`);
    const contextNote = trainer.patientContextNote(all, 'explained');
    if (contextNote) log(contextNote);
    explained = await trainer.gradCam(samples, { imageSize, population: all });
  } finally {
    await trainer.dispose();
  }
  await makeDirectory(out);
  const images: ExplainResult['images'] = [];
  for (const p of explained) {
    const file = `${p.imageName.replace(/[^A-Za-z0-9._-]/g, '_')}.png`;
    await fsp.writeFile(path.join(out, file), await gradCamPng(p), { flag: 'wx' });
    images.push({ imageName: p.imageName, target: p.target, probability: p.probability, file });
  }
  const label = (t: 0 | 1 | null) => (t === 1 ? 'melanoma' : t === 0 ? 'benign' : 'unknown');
  // Small training sizes (64 px) are shown at least 256 px tall, pixel for pixel, so they can be read.
  const size = explained[0]?.imageSize ?? 256;
  const scale = Math.max(1, Math.ceil(256 / size));
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Grad-CAM: ${escapeHtml(path.basename(checkpoints[0]))}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#1f2937}figure{display:inline-block;margin:0 16px 20px 0;vertical-align:top}figcaption{font-size:13px;color:#4b5563}img{image-rendering:${scale > 1 ? 'pixelated' : 'auto'};border:1px solid #e5e7eb}</style></head>
<body><h1>Where the model looked</h1>
<p>${escapeHtml(checkpoints[0])}. Each image as the model saw it, and beside it the Grad-CAM map of its melanoma logit: red where the features push towards melanoma, blue where they push away from it, clear where they do neither (each map scaled to its largest value).</p>
${images.map((i) => `<figure><img src="${escapeHtml(i.file)}" width="${2 * size * scale}" height="${size * scale}" alt="${escapeHtml(i.imageName)}"><figcaption><b>${escapeHtml(i.imageName)}</b> · ${label(i.target)} · score ${i.probability.toFixed(4)}</figcaption></figure>`).join('\n')}
</body></html>
`;
  const index = path.join(out, 'index.html');
  await fsp.writeFile(index, html, { flag: 'wx' });
  return { images, index };
}
