/**
 * GPU (nvJPEG) decoding against sharp's: the same JPEGs decoded and resized both ways, compared
 * pixel by pixel, over the kinds of JPEG a dermoscopy set holds (baseline 4:2:0 and 4:4:4,
 * progressive, greyscale, non-square with 'fill' and 'cover', smaller than the training size) and
 * one damaged file. It reports; it asserts nothing. Without a GPU decoder it says why and stops.
 */
import sharp from 'sharp';
import { renderLesion } from '../data/demo';
import { decodeImage } from '../data/images';
import { mulberry32 } from '../data/random';
import { ENGINE_PROBE, engineConfig, resolveOptions } from '../model/config';
import { Engine, EngineError } from '../native';

export interface DecodeCheckRow {
  case: string;
  fit: 'fill' | 'cover';
  source: string;
  /** |sharp - nvjpeg| over every byte of the resized image: mean, 99th percentile, max. */
  meanAbsDiff: number;
  p99AbsDiff: number;
  maxAbsDiff: number;
}

export interface DecodeCheckResult {
  benchmark: 'decode-check';
  imageSize: number;
  available: boolean;
  /** Why there was nothing to compare (no CUDA, an engine without nvJPEG). */
  reason?: string;
  jpegBackend?: string | null;
  rows: DecodeCheckRow[];
  /** What the engine did with a JPEG whose entropy-coded data was overwritten with noise. */
  damaged?: string;
}

interface Case {
  name: string;
  source: string;
  fit: 'fill' | 'cover';
  bytes: Buffer;
}

/** The JPEGs to compare, rendered here: a synthetic lesion, encoded in each way that matters. */
export async function decodeCheckCases(sourceSize = 1024): Promise<Case[]> {
  const lesion = () => sharp(renderLesion(sourceSize, true, mulberry32(11)), { raw: { width: sourceSize, height: sourceSize, channels: 3 } });
  const wide = Math.round(sourceSize * 0.75);
  const baseline = await lesion().jpeg({ quality: 90 }).toBuffer();
  const nonSquare = await lesion().extract({ left: 0, top: 0, width: sourceSize, height: wide }).jpeg({ quality: 90 }).toBuffer();
  const size = `${sourceSize}x${sourceSize}`;
  return [
    { name: 'baseline', source: `${size} baseline 4:2:0 q90`, fit: 'fill', bytes: baseline },
    { name: 'chroma-444', source: `${size} baseline 4:4:4 q90`, fit: 'fill', bytes: await lesion().jpeg({ quality: 90, chromaSubsampling: '4:4:4' }).toBuffer() },
    { name: 'progressive', source: `${size} progressive q90`, fit: 'fill', bytes: await lesion().jpeg({ quality: 90, progressive: true }).toBuffer() },
    { name: 'greyscale', source: `${size} greyscale q90`, fit: 'fill', bytes: await lesion().toColourspace('b-w').jpeg({ quality: 90 }).toBuffer() },
    { name: 'non-square-fill', source: `${sourceSize}x${wide} baseline`, fit: 'fill', bytes: nonSquare },
    { name: 'non-square-cover', source: `${sourceSize}x${wide} baseline`, fit: 'cover', bytes: nonSquare },
    { name: 'small', source: '200x150 baseline', fit: 'fill', bytes: await lesion().resize(200, 150, { fit: 'fill' }).jpeg({ quality: 90 }).toBuffer() },
  ];
}

function differences(a: Buffer, b: Buffer) {
  const diffs = new Uint8Array(a.length);
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    diffs[i] = Math.abs(a[i] - b[i]);
    sum += diffs[i];
  }
  diffs.sort();
  return { meanAbsDiff: sum / a.length, p99AbsDiff: diffs[Math.floor(0.99 * (diffs.length - 1))], maxAbsDiff: diffs[diffs.length - 1] };
}

export async function runDecodeCheck({ imageSize = 256, device = 'cuda' as 'cuda' | 'cpu' | 'auto' } = {}): Promise<DecodeCheckResult> {
  const result: DecodeCheckResult = { benchmark: 'decode-check', imageSize, available: false, rows: [] };
  let engine: Engine;
  try {
    // A tiny model: only the decoder is exercised (previewAugment returns the decoded batch).
    const options = resolveOptions({ device, decode: 'nvjpeg', widthFactor: 0.25, stageLimit: 1, imageSize }, ENGINE_PROBE);
    engine = await Engine.create(engineConfig(options, 1));
  } catch (err) {
    if (!(err instanceof RangeError || err instanceof EngineError)) throw err;
    return { ...result, reason: err.message };
  }
  try {
    result.available = true;
    result.jpegBackend = engine.info().jpegBackend;
    const cases = await decodeCheckCases();
    // One batch per fit, so the batched path and (with the hardware backend) its per-image
    // fallback for progressive files both run.
    for (const fit of ['fill', 'cover'] as const) {
      const group = cases.filter((c) => c.fit === fit);
      const pixels = await engine.previewAugment({ jpegs: group.map((c) => c.bytes), fit, batchSize: group.length, height: imageSize, width: imageSize });
      const bytesPerImage = imageSize * imageSize * 3;
      for (const [i, c] of group.entries()) {
        const reference = await decodeImage(c.bytes, { size: imageSize, fit, imageName: c.name });
        result.rows.push({ case: c.name, fit, source: c.source, ...differences(reference, pixels.subarray(i * bytesPerImage, (i + 1) * bytesPerImage)) });
      }
    }
    const damaged = Buffer.from(cases[0].bytes);
    const random = mulberry32(5);
    for (let i = Math.floor(damaged.length * 0.3); i < damaged.length * 0.6; i++) damaged[i] = Math.floor(random() * 256);
    result.damaged = await engine
      .previewAugment({ jpegs: [damaged], batchSize: 1, height: imageSize, width: imageSize })
      .then(() => 'decoded without an error (GPU decoders do not check the entropy-coded data)')
      .catch((err: Error & { code?: string }) => `rejected: ${err.code ?? err.name}: ${err.message}`);
    return result;
  } finally {
    await engine.dispose();
  }
}
