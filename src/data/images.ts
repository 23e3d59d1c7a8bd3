/**
 * JPEG bytes -> imageSize x imageSize RGB uint8 (HWC) with sharp.
 *
 * sharp (libvips + mozjpeg) shrinks on load: a 1024 px JPEG is decoded at 1/2, 1/4 or 1/8 scale
 * by the IDCT itself before the final resize, which is most of the speed at small sizes.
 */
import { promises as fsp } from 'fs';
import sharp, { Metadata, Sharp } from 'sharp';
import { DataError } from './errors';
import { readSpan } from './tfrecord';
import { ImageSource, LesionSample } from './types';

/**
 * How a non-square image becomes square:
 * - 'fill' (default): stretch to size x size, every pixel of the lesion kept (what tf.image.resize
 *   does in the TFRecord pipelines; the SIIM-ISIC resized sets are square already);
 * - 'cover': keep the aspect ratio and crop the centre.
 */
export type ResizeFit = 'fill' | 'cover';

export type ImageFormat = 'jpeg' | 'png' | 'gif' | 'webp' | 'tiff' | 'bmp';

/** The image format from magic bytes, or null when the bytes are none we know. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  const b = bytes;
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'png';
  if (b.length >= 4 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38) return 'gif';
  if (b.length >= 12 && Buffer.from(b.subarray(0, 4)).toString('latin1') === 'RIFF' && Buffer.from(b.subarray(8, 12)).toString('latin1') === 'WEBP')
    return 'webp';
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a) || (b[0] === 0x4d && b[1] === 0x4d && b[3] === 0x2a))) return 'tiff';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  return null;
}

/** libvips repeats its warnings line by line: keep each distinct line once. */
function conciseMessage(err: unknown): string {
  const lines = String(err instanceof Error ? err.message : err)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return [...new Set(lines)].join('; ');
}

/** Where an image came from, for messages: a file, or a record of a TFRecord file. */
export function describeSource(source: ImageSource): string {
  switch (source.kind) {
    case 'file':
      return source.path;
    case 'tfrecord':
      return `${source.file} record ${source.recordIndex} (JPEG at byte ${source.offset})`;
    case 'memory':
      return 'an in-memory buffer';
  }
}

export interface DecodeOptions {
  size: number;
  fit?: ResizeFit;
  /** Named in errors. */
  imageName?: string;
  source?: ImageSource;
}

/**
 * Runs `output` on a sharp pipeline that turns JPEG bytes into size x size sRGB without alpha,
 * EXIF orientation applied. Non-JPEG bytes give ERR_IMAGE_FORMAT, undecodable ones
 * ERR_IMAGE_DECODE, both naming the image and its source. (@internal: image-content.ts checks
 * images through it, so it judges the pixels training sees.)
 */
export async function resized<T>(bytes: Buffer, options: DecodeOptions, output: (pipeline: Sharp) => Promise<T>): Promise<T> {
  const { size, fit = 'fill', imageName = 'image', source } = options;
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`Expected positive integer for size but received ${size}`);
  const { where, context } = requireJpeg(bytes, imageName, source);
  try {
    return await output(
      sharp(bytes, { failOn: 'truncated' })
        .rotate() // EXIF orientation
        .resize(size, size, { fit, position: 'centre' })
        .toColourspace('srgb')
        .removeAlpha(),
    );
  } catch (err) {
    throw undecodable(err, bytes, imageName, where, context);
  }
}

function undecodable(err: unknown, bytes: Buffer, imageName: string, where: string, context: ReturnType<typeof requireJpeg>['context']): DataError {
  // libvips sometimes fails a cut-off file without a reason ("Unknown error"): say what it is.
  const reason = conciseMessage(err);
  const said = /^unknown error$/i.test(reason) && !hasEndOfImage(bytes) ? `the JPEG is truncated (${truncatedDetail})` : reason;
  return new DataError('ERR_IMAGE_DECODE', `Cannot decode ${imageName} from ${where}: ${said}. The JPEG is damaged: replace it or remove it from the dataset`, {
    ...context,
    cause: err,
  });
}

/**
 * The EXIF orientation of a JPEG (1-8; 1 = stored upright, also when there is no EXIF block or it
 * cannot be read). Reads the markers before the image data only; every offset is bounds-checked.
 * sharp's metadata() says the same, but it is a round trip through libuv's pool (about 0.5 ms
 * per 1024 px JPEG here, against 4 us for this), paid for every image on the nvJPEG path, which
 * exists because the CPU is what runs short.
 */
export function jpegOrientation(bytes: Uint8Array): number {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 2; // after SOI
  while (at + 4 <= b.length) {
    if (b[at] !== 0xff) return 1;
    const marker = b[at + 1];
    if (marker === 0xff) {
      at += 1; // fill byte
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return 1; // image data (or the end): no metadata after it
    const end = at + 2 + b.readUInt16BE(at + 2);
    if (end > b.length) return 1;
    if (marker === 0xe1 && end - at >= 10 + 8 && b.toString('latin1', at + 4, at + 10) === 'Exif\0\0') {
      return tiffOrientation(b.subarray(at + 10, end));
    }
    at = end;
  }
  return 1;
}

function tiffOrientation(tiff: Buffer): number {
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return 1;
  const u16 = (o: number) => (order === 'II' ? tiff.readUInt16LE(o) : tiff.readUInt16BE(o));
  const u32 = (o: number) => (order === 'II' ? tiff.readUInt32LE(o) : tiff.readUInt32BE(o));
  if (u16(2) !== 42) return 1;
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return 1;
  const entries = u16(ifd);
  for (let k = 0; k < entries; k++) {
    const entry = ifd + 2 + 12 * k;
    if (entry + 12 > tiff.length) return 1;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 8); // a SHORT, stored left-aligned in the value field
      return u16(entry + 2) === 3 && value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

/**
 * Throws ERR_IMAGE_FORMAT, naming the image and its source, unless `bytes` start as a JPEG; returns
 * the words and context its later errors use.
 */
function requireJpeg(bytes: Buffer, imageName: string, source: ImageSource | undefined) {
  const where = source ? describeSource(source) : 'an in-memory buffer';
  const context = { imageName, file: source?.kind === 'file' ? source.path : source?.kind === 'tfrecord' ? source.file : undefined };
  const format = sniffImageFormat(bytes);
  if (format !== 'jpeg') {
    throw new DataError(
      'ERR_IMAGE_FORMAT',
      `${imageName} from ${where} is ${format ? `a ${format.toUpperCase()} image` : bytes.length === 0 ? 'an empty file (0 bytes)' : `not an image (first bytes ${bytes.subarray(0, 4).toString('hex')})`}, ` +
        'not a JPEG: the pipeline reads JPEGs only; convert the image to JPEG or remove it from the dataset',
      context,
    );
  }
  return { where, context };
}

/**
 * A sample's JPEG header (its size), with the loader's own refusals: ERR_IMAGE_FORMAT for bytes
 * that are not a JPEG, ERR_IMAGE_DECODE naming the image for one sharp cannot open.
 */
export async function jpegMetadata(bytes: Buffer, imageName: string, source: ImageSource | undefined): Promise<Metadata> {
  const { where, context } = requireJpeg(bytes, imageName, source);
  try {
    return await sharp(bytes).metadata();
  } catch (err) {
    throw undecodable(err, bytes, imageName, where, context);
  }
}

/** How far from the end a JPEG's end-of-image marker may sit (encoders pad some files). */
const EOI_SEARCH_BYTES = 4096;
const truncatedDetail = `no end-of-image marker in its last ${EOI_SEARCH_BYTES} bytes`;

function hasEndOfImage(bytes: Buffer): boolean {
  return bytes.subarray(Math.max(2, bytes.length - EOI_SEARCH_BYTES)).lastIndexOf(Buffer.from([0xff, 0xd9])) >= 0;
}

/**
 * A sample's JPEG file, read and checked but not decoded, for decoding on the GPU (decode
 * 'nvjpeg'). GPU decoders do not notice a truncated file, so one without an end-of-image marker
 * near its end is refused here (ERR_IMAGE_DECODE), as sharp refuses it on the CPU.
 * nvJPEG decodes the pixels as stored, where sharp turns them upright by the EXIF orientation:
 * a file with an orientation other than 1 is turned upright here, on the CPU, and re-encoded
 * (quality 95, no chroma subsampling), so the GPU decodes the picture sharp and `predict` see.
 */
export async function readSampleJpeg(sample: LesionSample, reader: ImageBytesReader): Promise<Buffer> {
  const bytes = await reader.read(sample.image, sample.imageName);
  const { where, context } = requireJpeg(bytes, sample.imageName, sample.image);
  if (!hasEndOfImage(bytes)) {
    throw new DataError(
      'ERR_IMAGE_DECODE',
      `Cannot decode ${sample.imageName} from ${where}: the JPEG is truncated (${truncatedDetail}). ` +
        'The JPEG is damaged: replace it or remove it from the dataset',
      context,
    );
  }
  if (jpegOrientation(bytes) === 1) return bytes;
  try {
    return await sharp(bytes, { failOn: 'truncated' }).rotate().jpeg({ quality: 95, chromaSubsampling: '4:4:4' }).toBuffer();
  } catch (err) {
    throw undecodable(err, bytes, sample.imageName, where, context);
  }
}

/** Decodes a JPEG to size x size x 3 uint8 RGB (HWC), as training and prediction see it. */
export async function decodeImage(bytes: Buffer, options: DecodeOptions): Promise<Buffer> {
  const { size } = options;
  return resized(bytes, options, async (pipeline) => {
    const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || info.width !== size || info.height !== size)
      throw new Error(`decoded to ${info.width}x${info.height}x${info.channels} instead of ${size}x${size}x3`);
    return data;
  });
}

/**
 * The same size x size image as decodeImage gives, encoded as a JPEG of `quality` (1-100): what
 * `melanoma convert` stores, so a set converted at the training size trains like the original.
 */
export async function resizeToJpeg(bytes: Buffer, options: DecodeOptions & { quality: number }): Promise<Buffer> {
  return resized(bytes, options, (pipeline) => pipeline.jpeg({ quality: options.quality }).toBuffer());
}

/**
 * Reads image bytes from their source. TFRecord spans reuse one open handle per file; call
 * close() when done (the loader does at the end of each epoch).
 */
export class ImageBytesReader {
  private readonly handles = new Map<string, Promise<fsp.FileHandle>>();

  async read(source: ImageSource, imageName = 'image'): Promise<Buffer> {
    try {
      switch (source.kind) {
        case 'memory':
          return source.bytes;
        case 'file':
          return await fsp.readFile(source.path);
        case 'tfrecord': {
          let handle = this.handles.get(source.file);
          if (!handle) {
            handle = fsp.open(source.file, 'r');
            this.handles.set(source.file, handle);
          }
          return await readSpan(await handle, source.offset, source.length);
        }
      }
    } catch (err) {
      if (err instanceof DataError) throw err;
      throw new DataError('ERR_IMAGE_MISSING', `Cannot read ${imageName} from ${describeSource(source)}: ${(err as Error).message}`, {
        imageName,
        file: source.kind === 'file' ? source.path : source.kind === 'tfrecord' ? source.file : undefined,
        cause: err,
      });
    }
  }

  async close(): Promise<void> {
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map(async (h) => (await h.catch(() => null))?.close()));
  }
}

/** Reads and decodes one sample's image. */
export async function loadSampleImage(sample: LesionSample, size: number, reader: ImageBytesReader, fit: ResizeFit = 'fill'): Promise<Buffer> {
  const bytes = await reader.read(sample.image, sample.imageName);
  return decodeImage(bytes, { size, fit, imageName: sample.imageName, source: sample.image });
}
