/**
 * Does an image that decodes fine hold a picture? A broken export or a failed thumbnail can give a
 * valid JPEG that is one colour, or one line of pixels stretched over the frame (every row, or
 * every column, nearly the same). Such an image shows no lesion shape or border, at most one
 * line's colours, and a dataset can hold many: half of ../shared/data/uda1-dev is streaked.
 */
import sharp from 'sharp';
import { ImageBytesReader, describeSource } from './images';
import { mixSeed, mulberry32, shuffleInPlace } from './random';
import type { LesionSample } from './types';

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

/** Decodes the image small and tells whether it is blank or streaked. Throws what sharp throws for an undecodable image. */
export async function assessImageContent(bytes: Buffer): Promise<ImageContentAssessment> {
  const grey = await sharp(bytes).resize(THUMBNAIL, THUMBNAIL, { fit: 'fill' }).greyscale().raw().toBuffer();
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
  return { defect, contrast, anisotropy, streakAlong: defect === 'streaked' ? streakAlong : null };
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
  const picked = shuffleInPlace(samples.slice(), mulberry32(mixSeed(options.seed ?? 0, 0xc0a7))).slice(0, options.count ?? 20);
  const degenerate: DegenerateSample[] = [];
  let checked = 0;
  const reader = new ImageBytesReader();
  try {
    for (const s of picked) {
      let content: ImageContentAssessment;
      try {
        content = await assessImageContent(await reader.read(s.image, s.imageName));
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
export function degenerateWarning(found: { checked: number; degenerate: readonly DegenerateSample[] }, data: string): string | null {
  if (!found.degenerate.length) return null;
  const names = found.degenerate.slice(0, 3).map((d) => d.imageName).join(', ') + (found.degenerate.length > 3 ? ', ...' : '');
  return (
    `warning: ${found.degenerate.length} of ${found.checked} sampled images are blank or streaked and show no lesion (${names}). ` +
    `melanoma inspect ${data} --sample-images all lists every one; melanoma convert --data ${data} --out NEW_FOLDER --size SIZE --skip-degenerate leaves them out`
  );
}
