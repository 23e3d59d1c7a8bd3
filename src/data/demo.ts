/**
 * Built-in demo data: synthetic dermoscopy-like images written as a SIIM-ISIC TFRecord set, so
 * `npm run train:native` works on a fresh machine with no download. The classes differ the way
 * the ABCD rule says melanomas differ (asymmetry, irregular border, several colours, larger
 * diameter), with overlap, so the task is learnable but not trivial. Fixed seed: the same bytes
 * on every machine.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { makeDirectory, makeStagingFolder, OutputLocationError } from '../files';
import { describe, expectInteger, expectNumber, stripUndefined } from '../model/config';
import { refuseUnknownOptions } from '../options';
import { mixSeed, mulberry32 } from './random';
import { encodeExample, writeTfRecordFile } from './tfrecord';

export interface DemoOptions {
  /** Folder for the set; default: the user cache folder (see demoCacheDir). */
  dir?: string;
  images?: number;
  files?: number;
  /** Fraction of melanomas (ISIC 2020: 0.018; the demo uses more so a short run learns). */
  positiveFraction?: number;
  /** Side of the stored JPEGs in pixels. */
  size?: number;
  seed?: number;
}

const DEMO_VERSION = 'demo-v1';
const DEFAULTS = { images: 480, files: 4, positiveFraction: 0.25, size: 96, seed: 2020 };

/** $MELANOMA_CACHE, else $XDG_CACHE_HOME/melanoma-native, else ~/.cache/melanoma-native. */
export function cacheRoot(): string {
  if (process.env.MELANOMA_CACHE) return process.env.MELANOMA_CACHE;
  const xdg = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(xdg, 'melanoma-native');
}

/**
 * The cache folder of the demo set made with `options` (no dir): the default set's is
 * `demo-v1`; another set's name spells out how it differs, so the two never share a folder.
 */
export function demoCacheDir(options: Omit<DemoOptions, 'dir'> = {}): string {
  return cacheDirOf(demoSettings(options));
}

function cacheDirOf(o: DemoSettings): string {
  const differences = (Object.keys(DEFAULTS) as (keyof DemoSettings)[]).filter((key) => o[key] !== DEFAULTS[key]).map((key) => `${key}-${o[key]}`);
  return path.join(cacheRoot(), [DEMO_VERSION, ...differences].join('_'));
}

type DemoSettings = typeof DEFAULTS;

/** The options with their defaults, each checked: a bad one throws before anything is written. */
function demoSettings(options: DemoOptions): DemoSettings {
  if (typeof options !== 'object' || options === null) throw new TypeError(`Expected a demo options object but received ${describe(options)}`);
  refuseUnknownOptions(options, ['dir', ...Object.keys(DEFAULTS)]);
  const { dir: _dir, ...given } = stripUndefined(options);
  const o = { ...DEFAULTS, ...given };
  expectInteger('images', o.images, 2);
  expectInteger('files', o.files, 1, o.images);
  expectNumber('positiveFraction', o.positiveFraction, 0, 1);
  expectInteger('size', o.size, 32, 4096);
  expectInteger('seed', o.seed, 0);
  return o;
}

/**
 * Why the folder `dir`, holding `manifestText`, is not the demo set `wanted` asks for (made by
 * another version or with other options), or null when it is.
 */
function demoSetMismatch(dir: string, manifestText: string, wanted: DemoSettings): string | null {
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(manifestText) as Record<string, unknown>;
  } catch {
    return `${path.join(dir, 'manifest.json')} is not JSON`;
  }
  if (manifest.version !== DEMO_VERSION) return `it was made by demo generator ${JSON.stringify(manifest.version)}, not ${DEMO_VERSION}`;
  const differences = (Object.keys(wanted) as (keyof DemoSettings)[])
    .filter((key) => manifest[key] !== wanted[key])
    .map((key) => `${key} ${JSON.stringify(manifest[key])} where ${wanted[key]} was asked for`);
  return differences.length ? `it was made with ${differences.join(', ')}` : null;
}

/** Pixels of one synthetic lesion image, RGB uint8, size x size. */
export function renderLesion(size: number, malignant: boolean, random: () => number): Buffer {
  const pixels = Buffer.alloc(size * size * 3);
  // Skin tone and lighting vary per image, not per class.
  const skin = [205 + random() * 40, 150 + random() * 40, 120 + random() * 40];
  const lightAngle = random() * 2 * Math.PI;
  const cx = size * (0.4 + random() * 0.2);
  const cy = size * (0.4 + random() * 0.2);
  // Overlap between classes: some nevi are large or irregular, some melanomas small.
  const atypical = random() < 0.15;
  const radius = size * (malignant || atypical ? 0.22 + random() * 0.14 : 0.14 + random() * 0.1);
  const elongation = 1 + random() * (malignant ? 0.5 : 0.2);
  const border = malignant ? 0.12 + random() * 0.18 : atypical ? 0.1 : 0.03;
  const phases = Array.from({ length: 4 }, () => random() * 2 * Math.PI);
  const base = malignant ? [95 + random() * 30, 55 + random() * 20, 40 + random() * 15] : [150 + random() * 30, 100 + random() * 20, 70 + random() * 15];
  const blueGrey = [95, 100, 125];
  const darkCore = [45, 30, 25];
  const spots = malignant ? 3 + Math.floor(random() * 4) : atypical ? 1 : 0;
  const spotCentres = Array.from({ length: spots }, () => [cx + (random() - 0.5) * radius, cy + (random() - 0.5) * radius, radius * (0.2 + random() * 0.3), random() < 0.5 ? 1 : 0]);

  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = (x - cx) / elongation;
      const dy = y - cy;
      const angle = Math.atan2(dy, dx);
      const wobble =
        1 + border * (Math.sin(3 * angle + phases[0]) + 0.6 * Math.sin(5 * angle + phases[1]) + 0.4 * Math.sin(9 * angle + phases[2]));
      const r = Math.hypot(dx, dy) / (radius * wobble);
      const light = 0.9 + 0.1 * Math.cos(Math.atan2(y - size / 2, x - size / 2) - lightAngle);
      const noise = (random() - 0.5) * 18;
      let colour = skin;
      if (r < 1) {
        colour = base;
        for (const [sx, sy, sr, kind] of spotCentres) {
          if (Math.hypot(x - sx, y - sy) < sr) colour = kind ? blueGrey : darkCore;
        }
        // A soft edge, sharper for benign lesions.
        const edge = Math.min(1, (1 - r) * (malignant ? 4 : 8));
        colour = colour.map((c, i) => c * edge + skin[i] * (1 - edge));
      }
      const offset = (y * size + x) * 3;
      for (let c = 0; c < 3; c++) pixels[offset + c] = Math.max(0, Math.min(255, colour[c] * light + noise));
    }
  }
  return pixels;
}

/**
 * Returns the demo set's folder, generating it first when absent: `trainNN-COUNT.tfrec` files
 * with the SIIM-ISIC features, written to a temporary folder and renamed into place, so an
 * interrupted generation is never mistaken for a finished one.
 */
export async function ensureDemoDataset(options: DemoOptions = {}, log: (line: string) => void = () => undefined): Promise<string> {
  const o = demoSettings(options);
  const dir = options.dir ?? cacheDirOf(o);
  const existing = await fsp.readFile(path.join(dir, 'manifest.json'), 'utf8').catch(() => null);
  if (existing !== null) {
    // A set made otherwise would train on other data than asked for: refuse it, and touch nothing.
    const mismatch = demoSetMismatch(dir, existing, o);
    if (!mismatch) return dir;
    throw new OutputLocationError(`${dir} holds another demo set than the one asked for: ${mismatch}. Pass another dir, or remove ${dir} to have it generated again`, 'EEXIST');
  }
  const found = await fsp.stat(dir).catch(() => null);
  if (found && !found.isDirectory())
    throw new OutputLocationError(`${dir} is a file, not a folder, and was left untouched: pass another dir for the demo set${options.dir ? '' : ' (or set MELANOMA_CACHE to a writable folder)'}`, 'ENOTDIR');
  const entries = found ? await fsp.readdir(dir) : [];
  if (entries.length > 0)
    throw new OutputLocationError(`${dir} exists and is not a demo set (no manifest.json; it holds ${entries.length === 1 ? '1 entry' : `${entries.length} entries`}): pass another dir, one that does not exist yet`, 'EEXIST');
  log(`generating the demo dataset (${o.images} synthetic lesion images, ${o.files} TFRecord files) in ${dir}`);
  const staging = await makeStagingFolder(dir, 'an interrupted generation of the demo set', log).catch((err: unknown) => {
    if (options.dir || !(err instanceof OutputLocationError)) throw err;
    throw new OutputLocationError(`${err.message} (the demo set is kept under ${cacheRoot()}: set MELANOMA_CACHE to a writable folder to keep it elsewhere)`, err.code);
  });
  const random = mulberry32(mixSeed(o.seed));
  const positives = Math.round(o.images * o.positiveFraction);
  const perFile = Math.ceil(o.images / o.files);
  for (let file = 0; file < o.files; file++) {
    const records: Buffer[] = [];
    for (let i = file * perFile; i < Math.min(o.images, (file + 1) * perFile); i++) {
      // Spread positives evenly over the files (as the SIIM-ISIC files are stratified).
      const malignant = Math.floor(((i + 1) * positives) / o.images) > Math.floor((i * positives) / o.images);
      const jpeg = await sharp(renderLesion(o.size, malignant, random), { raw: { width: o.size, height: o.size, channels: 3 } })
        .jpeg({ quality: 90 })
        .toBuffer();
      records.push(
        encodeExample({
          image: jpeg,
          image_name: `DEMO_${String(i).padStart(7, '0')}`,
          // Two images per patient on average, as patients in ISIC 2020 have several.
          patient_id: Math.floor(i / 2),
          sex: Math.floor(random() * 2),
          age_approx: 20 + 5 * Math.floor(random() * 14),
          anatom_site_general_challenge: Math.floor(random() * 6),
          diagnosis: malignant ? 1 : 0,
          target: malignant ? 1 : 0,
        }),
      );
    }
    await writeTfRecordFile(path.join(staging, `train${String(file).padStart(2, '0')}-${records.length}.tfrec`), records);
  }
  const manifest = { version: DEMO_VERSION, ...o, positives, generatedAt: new Date().toISOString() };
  await fsp.writeFile(path.join(staging, 'manifest.json'), JSON.stringify(manifest, null, 2));
  await makeDirectory(path.dirname(dir));
  try {
    await fsp.rename(staging, dir);
  } catch (err) {
    // Another process finished first: keep its copy.
    await fsp.rm(staging, { recursive: true, force: true });
    if (!(await fsp.stat(path.join(dir, 'manifest.json')).catch(() => null))) throw err;
  }
  return dir;
}
