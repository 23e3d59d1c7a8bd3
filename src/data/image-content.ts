/**
 * Does an image that decodes fine hold a picture? A broken export or a failed thumbnail can give a
 * valid JPEG that is one colour, or one line of pixels stretched over the frame (every row, or
 * every column, nearly the same). Such an image shows no lesion shape or border, at most one
 * line's colours, and a dataset can hold many: half of ../shared/data/uda1-dev is streaked.
 */
import { ImageBytesReader, describeSource, resized } from './images';
import { seededSample } from './random';
import type { ImageSource, LesionSample } from './types';

export type ImageContentDefect = 'blank' | 'streaked';

export interface ImageContentAssessment {
  defect: ImageContentDefect | null;
  /** Standard deviation of the grey levels (0-255) of the thumbnail. */
  contrast: number;
  /**
   * Clipped gradient along the columns over that along the rows, or its inverse, whichever is
   * larger: 1 when the image has as much structure down as across; large when it is streaked.
   */
  anisotropy: number;
  /** 'rows' when every row is nearly the same (vertical streaks), 'columns' for horizontal ones. */
  streakAlong: 'rows' | 'columns' | null;
  /** 16x16 block means of the thumbnail, standardized (mean 0, deviation 1): compared by findSamePictures. */
  signature: Float32Array;
}

/** The image is compared as a greyscale thumbnail of this side: fast even for 6000x4000 JPEGs (shrink-on-load). */
const THUMBNAIL = 64;
// Differences between neighbours are clipped at this many grey levels, so the few strong edges
// of a black letterbox bar or a dermoscope's circle do not outweigh the texture of the whole
// image. Measured on uda1-dev at 64 px: its 150 real lesions have an anisotropy of at most 2.08
// (2.08 with the clip, 3.1 without it, from letterboxed images); its 150 streaked images at least 3.03.
const GRADIENT_CLIP = 8;
/** Between the two (their geometric mean), with about 20% margin on each side. */
const MAX_ANISOTROPY = 2.5;
/** Below this standard deviation (grey levels) an image is one colour; real photographs are far above (uda1-dev: at least 4.4). */
const MIN_CONTRAST = 1.5;

/**
 * Decodes the image small, as the loader decodes (EXIF orientation applied, truncation refused),
 * and tells whether it is blank or streaked. Non-JPEG or undecodable bytes give the loader's DataErrors.
 */
export async function assessImageContent(bytes: Buffer, imageName?: string, source?: ImageSource): Promise<ImageContentAssessment> {
  const grey = await resized(bytes, { size: THUMBNAIL, imageName, source }, (pipeline) => pipeline.greyscale().raw().toBuffer());
  const n = THUMBNAIL;
  let mean = 0;
  for (const v of grey) mean += v;
  mean /= grey.length;
  let variance = 0;
  for (const v of grey) variance += (v - mean) ** 2;
  const contrast = Math.sqrt(variance / grey.length);

  let down = 0;
  let across = 0;
  for (let y = 0; y < n - 1; y++) {
    for (let x = 0; x < n - 1; x++) {
      const here = grey[y * n + x];
      down += Math.min(GRADIENT_CLIP, Math.abs(grey[(y + 1) * n + x] - here));
      across += Math.min(GRADIENT_CLIP, Math.abs(grey[y * n + x + 1] - here));
    }
  }
  // +1 keeps the ratio finite for exact streaks; at 63x63 differences it shifts a real image's ratio by under 0.1%.
  const anisotropy = Math.max((across + 1) / (down + 1), (down + 1) / (across + 1));
  const streakAlong = anisotropy > MAX_ANISOTROPY ? (down < across ? 'rows' : 'columns') : null;
  const defect: ImageContentDefect | null = contrast < MIN_CONTRAST ? 'blank' : streakAlong ? 'streaked' : null;
  return { defect, contrast, anisotropy, streakAlong: defect === 'streaked' ? streakAlong : null, signature: blockSignature(grey, mean, contrast) };
}

const SIGNATURE_SIDE = 16;

function blockSignature(grey: Buffer, mean: number, contrast: number): Float32Array {
  const block = THUMBNAIL / SIGNATURE_SIDE;
  const sums = new Float64Array(SIGNATURE_SIDE * SIGNATURE_SIDE);
  for (let y = 0; y < THUMBNAIL; y++)
    for (let x = 0; x < THUMBNAIL; x++) sums[Math.floor(y / block) * SIGNATURE_SIDE + Math.floor(x / block)] += grey[y * THUMBNAIL + x];
  const signature = new Float32Array(sums.length);
  // Standardized, so a copy saved with other JPEG settings or at another size still matches.
  for (let i = 0; i < sums.length; i++) signature[i] = (sums[i] / (block * block) - mean) / Math.max(contrast, 1e-6);
  return signature;
}

/**
 * Largest mean absolute difference of two signatures that still counts as the same picture.
 * Measured on uda1-dev's 150 lesions: copies re-encoded at JPEG quality 60, shrunk to 120 px or
 * enlarged to 1000 px differ by at most 0.022; two different lesions by at least 0.179.
 */
export const SAME_PICTURE_DISTANCE = 0.06;

/** Mean absolute difference of two signatures, or Infinity once it is past `limit` (most pairs stop after a few blocks). */
function signatureDistance(a: Float32Array, b: Float32Array, limit: number): number {
  const budget = limit * a.length;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    sum += Math.abs(a[i] - b[i]);
    if (sum > budget) return Infinity;
  }
  return sum / a.length;
}

/**
 * Pairs of images that show the same picture: identical bytes (`digest`), or signatures within
 * SAME_PICTURE_DISTANCE. The images are swept in the order of their top-minus-bottom contrast:
 * two signatures within distance d differ there, and in left-minus-right, by at most 2d, so
 * only pairs close on both are compared in full (and most of those stop after a few blocks).
 */
export function findSamePictures(images: readonly { digest: string; signature: Float32Array }[]): { a: number; b: number; identicalFiles: boolean; distance: number }[] {
  const half = (signature: Float32Array, vertical: boolean) => {
    let sum = 0;
    for (let i = 0; i < signature.length; i++) {
      const row = Math.floor(i / SIGNATURE_SIDE), column = i % SIGNATURE_SIDE;
      sum += (vertical ? row : column) < SIGNATURE_SIDE / 2 ? signature[i] : -signature[i];
    }
    return sum / (signature.length / 2);
  };
  const topBottom = images.map((im) => half(im.signature, true));
  const leftRight = images.map((im) => half(im.signature, false));
  const order = images.map((_, i) => i).sort((i, j) => topBottom[i] - topBottom[j]);
  const window = 2 * SAME_PICTURE_DISTANCE;
  const pairs: { a: number; b: number; identicalFiles: boolean; distance: number }[] = [];
  for (let x = 0; x < order.length; x++) {
    const i = order[x];
    for (let y = x + 1; y < order.length && topBottom[order[y]] - topBottom[i] <= window; y++) {
      const j = order[y];
      if (Math.abs(leftRight[i] - leftRight[j]) > window) continue;
      const identicalFiles = images[i].digest === images[j].digest;
      const distance = identicalFiles ? 0 : signatureDistance(images[i].signature, images[j].signature, SAME_PICTURE_DISTANCE);
      if (distance <= SAME_PICTURE_DISTANCE) pairs.push(i < j ? { a: i, b: j, identicalFiles, distance } : { a: j, b: i, identicalFiles, distance });
    }
  }
  return pairs.sort((p, q) => p.a - q.a || p.b - q.b);
}
/** What a defect means for a person reading a report. */
export function describeContentDefect(a: ImageContentAssessment): string {
  if (a.defect === 'blank') return `blank: one colour (grey-level deviation ${a.contrast.toFixed(1)})`;
  if (a.defect === 'streaked') {
    const line = a.streakAlong === 'rows' ? 'row' : 'column';
    // Past 100x the streak is exact (one line of pixels stretched): a ratio would only be noise.
    if (a.anisotropy > 100) return `streaked: every ${line} the same`;
    return `streaked: every ${line} nearly the same (${a.anisotropy.toFixed(1)}x more structure ${a.streakAlong === 'rows' ? 'across than down' : 'down than across'})`;
  }
  return 'ok';
}

export interface DegenerateSample {
  imageName: string;
  /** Where it lies (a file, or a TFRecord record). */
  source: string;
  detail: string;
}

/**
 * Checks a seeded sample of a dataset's images (`count`, default 20) and returns the blank or
 * streaked ones. Images that cannot be read are passed over: training names those itself.
 */
export async function sampleDegenerateImages(
  samples: readonly LesionSample[],
  options: { count?: number; seed?: number } = {},
): Promise<{ checked: number; degenerate: DegenerateSample[] }> {
  const picked = seededSample(samples, options.count ?? 20, options.seed ?? 0);
  const degenerate: DegenerateSample[] = [];
  let checked = 0;
  const reader = new ImageBytesReader();
  try {
    for (const s of picked) {
      let content: ImageContentAssessment;
      try {
        content = await assessImageContent(await reader.read(s.image, s.imageName), s.imageName, s.image);
      } catch {
        continue;
      }
      checked++;
      if (content.defect) degenerate.push({ imageName: s.imageName, source: describeSource(s.image), detail: describeContentDefect(content) });
    }
  } finally {
    await reader.close();
  }
  return { checked, degenerate };
}

/** The warning train and cv print when their sample finds any; null when it finds none. */
export function degenerateWarning(found: { checked: number; degenerate: readonly DegenerateSample[] }, data: string, csv?: string | null): string | null {
  if (!found.degenerate.length) return null;
  const names = found.degenerate.slice(0, 3).map((d) => d.imageName).join(', ') + (found.degenerate.length > 3 ? ', ...' : '');
  return (
    `warning: ${found.degenerate.length} of ${found.checked} sampled images are blank or streaked and show no lesion (${names}). ` +
    `melanoma inspect ${data}${csvFlag(csv)} --sample-images all lists every one; melanoma convert --data ${data}${csvFlag(csv)} --out NEW_FOLDER --size SIZE --skip-degenerate leaves them out`
  );
}

/** ` --csv FILE` for a command line, when the data came with one (its join must not be lost). */
export function csvFlag(csv: string | null | undefined): string {
  return csv ? ` --csv ${csv}` : '';
}
