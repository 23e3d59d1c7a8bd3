/**
 * SIIM-ISIC datasets as users hold them (see shared/reference/siim-isic.md): a folder of
 * `trainNN-COUNT.tfrec` files, or a CSV (ISIC 2020 columns) with a folder of JPEGs. Both become
 * a list of LesionSample; images stay on disk (a TFRecord sample points at its JPEG's bytes).
 */
import { createReadStream, promises as fsp } from 'fs';
import * as path from 'path';
import { parse } from 'csv-parse';
import { DataError } from './errors';
import { describeSource } from './images';
import { ExampleFeature, ExampleFeatures, parseExample, readTfRecordFile } from './tfrecord';
import { LesionSample } from './types';
import { refuseUnknownOptions } from '../options';

export interface OpenDatasetOptions {
  /** 'auto' (default): TFRecords when the folder has *.tfrec files, else the CSV + JPEG layout. */
  format?: 'auto' | 'tfrecord' | 'jpeg';
  /**
   * TFRecord sets: a CSV joined on image_name for text metadata (the files carry integer codes).
   * JPEG layout: the CSV to read when the folder holds several.
   */
  csv?: string;
  /** JPEG folder (default: the first of <csv name>/, jpeg/, train/, test/, the CSV's folder that holds the first row's image). */
  imageDir?: string;
  /** Check TFRecord CRCs (default true). */
  verifyCrc?: boolean;
  /** Drop CSV rows with tfrecord == -1, the duplicate images (default true). */
  dropDuplicates?: boolean;
}

export interface IsicDataset {
  format: 'tfrecord' | 'jpeg';
  /** The file or folder that was opened. */
  source: string;
  samples: LesionSample[];
  /** TFRecord files read, with their record counts (empty for the JPEG layout). */
  files: { file: string; records: number }[];
  /** The CSV read or joined, if any. */
  csv: string | null;
  /** Samples dropped because their CSV row has tfrecord == -1. */
  droppedDuplicates: number;
  /** TFRecord samples without a row in the joined CSV (they keep the files' integer codes). */
  unmatchedInCsv: number;
}

/** One row of an ISIC CSV with its 1-based line number (for messages). */
export interface IsicCsvRow {
  line: number;
  values: Record<string, string>;
}

const REQUIRED_CSV_COLUMNS = ['image_name', 'patient_id'];

async function statOrNull(p: string) {
  return fsp.stat(p).catch(() => null);
}

/** Reads an ISIC CSV with csv-parse (quoted fields, BOM, CRLF handled); checks required columns. */
export async function readIsicCsv(file: string): Promise<IsicCsvRow[]> {
  const st = await statOrNull(file);
  if (!st) throw new DataError('ERR_CSV', `${file} does not exist: pass the path of an ISIC CSV (image_name, patient_id, ...)`, { file });
  if (!st.isFile()) throw new DataError('ERR_CSV', `${file} is a folder, not a CSV: pass the path of an ISIC CSV (image_name, patient_id, ...)`, { file });
  const rows: IsicCsvRow[] = [];
  const input = createReadStream(file);
  const parser = input.pipe(parse({ columns: true, bom: true, trim: true, skip_empty_lines: true, info: true }));
  // pipe() does not forward a read error (e.g. EACCES): without this it would go unhandled.
  input.on('error', (err) => parser.destroy(err));
  try {
    for await (const { record, info } of parser as AsyncIterable<{ record: Record<string, string>; info: { lines: number } }>) {
      rows.push({ line: info.lines, values: record });
    }
  } catch (err) {
    throw new DataError('ERR_CSV', `${file}: cannot parse the CSV (${(err as Error).message})`, { file, cause: err });
  }
  const columns = rows.length ? Object.keys(rows[0].values) : [];
  const missing = REQUIRED_CSV_COLUMNS.filter((c) => !columns.includes(c));
  if (rows.length === 0) throw new DataError('ERR_DATASET_EMPTY', `${file}: the CSV has no data rows`, { file });
  if (missing.length)
    throw new DataError(
      'ERR_CSV',
      `${file}: missing column(s) ${missing.join(', ')} (found: ${columns.join(', ')}). ` +
        'An ISIC CSV has image_name, patient_id, sex, age_approx, anatom_site_general_challenge[, diagnosis, benign_malignant, target].',
      { file },
    );
  refuseRepeatedNames(
    file,
    rows.map((r) => ({ imageName: r.values.image_name, where: `line ${r.line}` })),
    'remove the repeated rows from the CSV',
  );
  return rows;
}

/**
 * Every image once: a name that appears twice would be trained twice, sit in two folds, or be
 * joined to the wrong row, so it is refused before any work, naming where the first repeats are.
 */
export function refuseRepeatedNames(source: string, images: readonly { imageName: string; where: string }[], fix: string): void {
  const first = new Map<string, string>();
  const repeats: string[] = [];
  let count = 0;
  for (const { imageName, where } of images) {
    const earlier = first.get(imageName);
    if (earlier === undefined) {
      first.set(imageName, where);
      continue;
    }
    count++;
    if (repeats.length < 3) repeats.push(`${imageName} at ${earlier} and ${where}`);
  }
  if (count === 0) return;
  throw new DataError(
    'ERR_DATASET_DUPLICATE',
    `${source}: ${count} image name(s) appear more than once (${repeats.join('; ')}${count > repeats.length ? '; ...' : ''}): each image must appear once; ${fix}`,
    { file: source, imageName: images.find((i) => first.get(i.imageName) !== i.where)?.imageName },
  );
}

function textOrNull(v: string | undefined): string | null {
  return v === undefined || v === '' ? null : v;
}

function csvTarget(file: string, row: IsicCsvRow): 0 | 1 | null {
  const v = row.values.target;
  if (v === undefined || v === '') return null;
  if (v === '0' || v === '1') return Number(v) as 0 | 1;
  throw new DataError('ERR_CSV', `${file} line ${row.line}: target must be 0 or 1 but is '${v}' (image ${row.values.image_name})`, {
    file,
    imageName: row.values.image_name,
  });
}

function csvAge(file: string, row: IsicCsvRow): number | null {
  const v = row.values.age_approx;
  if (v === undefined || v === '') return null;
  const age = Number(v);
  if (!Number.isFinite(age))
    throw new DataError('ERR_CSV', `${file} line ${row.line}: age_approx must be a number but is '${v}' (image ${row.values.image_name})`, {
      file,
      imageName: row.values.image_name,
    });
  return age;
}

function isDuplicateRow(row: IsicCsvRow): boolean {
  return row.values.tfrecord !== undefined && Number(row.values.tfrecord) === -1;
}

/** Metadata of a CSV row as LesionSample fields (the image source is added by the caller). */
export function sampleFieldsFromCsvRow(file: string, row: IsicCsvRow): Omit<LesionSample, 'image'> {
  return {
    imageName: row.values.image_name,
    patientId: row.values.patient_id,
    target: csvTarget(file, row),
    sex: textOrNull(row.values.sex),
    ageApprox: csvAge(file, row),
    anatomSite: textOrNull(row.values.anatom_site_general_challenge),
    diagnosis: textOrNull(row.values.diagnosis),
  };
}

// ---------------------------------------------------------------------------------------------
// TFRecord features -> LesionSample
// ---------------------------------------------------------------------------------------------

/** Where a record lies, for messages and for the image source. */
export interface RecordLocation {
  file: string;
  recordIndex: number;
  /** File offset of the record's payload. */
  payloadOffset: number;
}

function featureError(where: RecordLocation, features: ExampleFeatures, what: string): DataError {
  const present = Object.keys(features).join(', ') || 'none';
  return new DataError(
    'ERR_EXAMPLE_FEATURE',
    `${where.file}: record ${where.recordIndex} at byte ${where.payloadOffset}: ${what} (features present: ${present}). ` +
      'Expected a SIIM-ISIC record with image, image_name, patient_id, sex, age_approx, anatom_site_general_challenge[, diagnosis, target].',
    { file: where.file, recordIndex: where.recordIndex, offset: where.payloadOffset },
  );
}

/** A scalar feature as a number (int64 or float) or string (bytes); undefined when absent or empty. */
function scalar(f: ExampleFeature | undefined): number | string | undefined {
  if (!f || f.kind === 'none') return undefined;
  if (f.kind === 'bytes') return f.values.length ? f.values[0].toString('utf8') : undefined;
  if (f.values.length === 0) return undefined;
  return Number(f.values[0]);
}

/** Categorical columns: text as is; integer codes as their decimal string; -1 / empty as missing. */
function category(f: ExampleFeature | undefined): string | null {
  const v = scalar(f);
  if (v === undefined || v === '' || v === -1) return null;
  return String(v);
}

/**
 * Maps a SIIM-ISIC tf.train.Example to a LesionSample. `image` and `image_name` are required;
 * `target` absent means a test record (null). Integer codes of sex/site/diagnosis are kept as
 * their decimal strings (the tables are not published): join a CSV for text values. A missing
 * patient_id makes the image its own patient.
 */
export function sampleFromExample(features: ExampleFeatures, where: RecordLocation): LesionSample {
  const image = features.image;
  if (!image) throw featureError(where, features, "no 'image' feature");
  if (image.kind !== 'bytes' || image.values.length !== 1)
    throw featureError(where, features, `'image' must hold one bytes value but is ${image.kind}${image.kind === 'bytes' ? ` with ${image.values.length} values` : ''}`);
  const imageName = scalar(features.image_name);
  if (typeof imageName !== 'string' || imageName === '') throw featureError(where, features, "no 'image_name' bytes feature");
  const t = scalar(features.target);
  if (t !== undefined && t !== 0 && t !== 1) throw featureError(where, features, `'target' must be 0 or 1 but is ${t}`);
  const age = scalar(features.age_approx);
  const patient = scalar(features.patient_id);
  return {
    imageName,
    patientId: patient === undefined ? imageName : String(patient),
    target: t === undefined ? null : t,
    sex: category(features.sex),
    ageApprox: typeof age === 'number' && age >= 0 && Number.isFinite(age) ? age : null,
    anatomSite: category(features.anatom_site_general_challenge),
    diagnosis: category(features.diagnosis),
    image: {
      kind: 'tfrecord',
      file: where.file,
      recordIndex: where.recordIndex,
      // The JPEG's own bytes inside the file: the loader reads just this span.
      offset: where.payloadOffset + image.offsets[0],
      length: image.values[0].length,
    },
  };
}

/** Reads every record of one TFRecord file into samples. */
export async function readTfRecordSamples(file: string, options: { verifyCrc?: boolean } = {}): Promise<LesionSample[]> {
  const samples: LesionSample[] = [];
  for await (const record of readTfRecordFile(file, { verifyCrc: options.verifyCrc ?? true })) {
    let features: ExampleFeatures;
    try {
      features = parseExample(record.payload);
    } catch (err) {
      if (err instanceof DataError)
        throw new DataError(err.code, `${file}: record ${record.recordIndex} at byte ${record.offset}: ${err.message}`, {
          file,
          recordIndex: record.recordIndex,
          offset: record.offset + (err.offset ?? 0),
          cause: err,
        });
      throw err;
    }
    samples.push(sampleFromExample(features, { file, recordIndex: record.recordIndex, payloadOffset: record.offset }));
  }
  return samples;
}

// ---------------------------------------------------------------------------------------------
// Opening a dataset
// ---------------------------------------------------------------------------------------------

function resolveOptions(options: OpenDatasetOptions): Required<Omit<OpenDatasetOptions, 'csv' | 'imageDir'>> & Pick<OpenDatasetOptions, 'csv' | 'imageDir'> {
  const known = ['format', 'csv', 'imageDir', 'verifyCrc', 'dropDuplicates'];
  refuseUnknownOptions(options, known, { of: 'openDataset' });
  const format = options.format ?? 'auto';
  if (!['auto', 'tfrecord', 'jpeg'].includes(format))
    throw new RangeError(`Expected 'auto', 'tfrecord' or 'jpeg' for format but received '${format}'`);
  return { format, csv: options.csv, imageDir: options.imageDir, verifyCrc: options.verifyCrc ?? true, dropDuplicates: options.dropDuplicates ?? true };
}

/** The *.tfrec files of a folder, sorted by name. */
export async function listTfRecordFiles(dir: string): Promise<string[]> {
  const names = await fsp.readdir(dir);
  return names.filter((n) => n.endsWith('.tfrec')).sort().map((n) => path.join(dir, n));
}

/**
 * Opens a SIIM-ISIC dataset: a folder of *.tfrec files, one .tfrec file, a folder with a CSV
 * (train.csv preferred, then test.csv) and its JPEGs, or a CSV file.
 */
export async function openDataset(pathOrDir: string, options: OpenDatasetOptions = {}): Promise<IsicDataset> {
  const opts = resolveOptions(options);
  const st = await statOrNull(pathOrDir);
  if (!st)
    throw new DataError('ERR_DATASET_NOT_FOUND', `${pathOrDir} does not exist: pass a folder of *.tfrec files or a folder/CSV of ISIC JPEGs`, {
      file: pathOrDir,
    });
  let tfrecords: string[] = [];
  let csv: string | undefined = opts.csv;
  if (st.isDirectory()) {
    tfrecords = await listTfRecordFiles(pathOrDir);
    if (opts.format !== 'tfrecord' && (opts.format === 'jpeg' || tfrecords.length === 0) && !csv) {
      const names = (await fsp.readdir(pathOrDir)).filter((n) => n.toLowerCase().endsWith('.csv'));
      const pick = ['train.csv', 'test.csv'].find((n) => names.includes(n)) ?? (names.length === 1 ? names[0] : undefined);
      if (pick) csv = path.join(pathOrDir, pick);
      else if (names.length > 1)
        throw new DataError('ERR_DATASET_EMPTY', `${pathOrDir} holds several CSVs (${names.join(', ')}) and no train.csv/test.csv: choose one with the csv option`, {
          file: pathOrDir,
        });
    }
  } else if (pathOrDir.endsWith('.tfrec')) {
    tfrecords = [pathOrDir];
  } else if (pathOrDir.toLowerCase().endsWith('.csv')) {
    csv = pathOrDir;
  }
  const useTfRecord = opts.format === 'tfrecord' || (opts.format === 'auto' && tfrecords.length > 0);
  if (useTfRecord) {
    if (tfrecords.length === 0)
      throw new DataError('ERR_DATASET_EMPTY', `${pathOrDir}: no *.tfrec files found. Point at the folder holding trainNN-COUNT.tfrec files`, {
        file: pathOrDir,
      });
    return openTfRecordSet(pathOrDir, tfrecords, csv, opts.verifyCrc, opts.dropDuplicates);
  }
  if (!csv)
    throw new DataError(
      'ERR_DATASET_EMPTY',
      `${pathOrDir}: no *.tfrec files and no CSV found. Point at a folder of SIIM-ISIC TFRecords (trainNN-COUNT.tfrec) ` +
        'or at a folder holding train.csv (or test.csv) and its JPEGs',
      { file: pathOrDir },
    );
  // A folder given with a CSV from elsewhere holds the JPEGs (or its jpeg/ or train/ does).
  return openJpegSet(pathOrDir, csv, opts.imageDir, st.isDirectory() ? pathOrDir : undefined, opts.dropDuplicates);
}

async function openTfRecordSet(
  source: string,
  files: string[],
  csv: string | undefined,
  verifyCrc: boolean,
  dropDuplicates: boolean,
): Promise<IsicDataset> {
  const perFile: { file: string; records: number }[] = [];
  let samples: LesionSample[] = [];
  for (const file of files) {
    const s = await readTfRecordSamples(file, { verifyCrc });
    perFile.push({ file, records: s.length });
    samples = samples.concat(s);
  }
  refuseRepeatedNames(
    source,
    samples.map((s) => ({ imageName: s.imageName, where: describeSource(s.image) })),
    'keep one copy of each image (convert or the TFRecord writer made them from a list with repeats)',
  );
  let droppedDuplicates = 0;
  let unmatchedInCsv = 0;
  if (csv) {
    const rows = await readIsicCsv(csv);
    const byName = new Map(rows.map((r) => [r.values.image_name, r]));
    const joined: LesionSample[] = [];
    const conflicts: { sample: LesionSample; csvTarget: number }[] = [];
    for (const s of samples) {
      const row = byName.get(s.imageName);
      if (!row) {
        unmatchedInCsv++;
        joined.push(s);
        continue;
      }
      if (dropDuplicates && isDuplicateRow(row)) {
        droppedDuplicates++;
        continue;
      }
      const fields = sampleFieldsFromCsvRow(csv, row);
      if (s.target !== null && fields.target !== null && fields.target !== s.target) conflicts.push({ sample: s, csvTarget: fields.target });
      // The CSV has the text values; the record's target stands unless it has none.
      joined.push({ ...s, ...fields, target: s.target ?? fields.target, image: s.image });
    }
    // Labels that disagree mean one side is not this set's: training on either would be a guess.
    if (conflicts.length > 0) {
      const examples = conflicts.slice(0, 3).map(({ sample, csvTarget }) => `${sample.imageName}: ${sample.target} in ${describeSource(sample.image)}, ${csvTarget} in the CSV`);
      throw new DataError(
        'ERR_CSV',
        `${csv} gives ${conflicts.length} of ${samples.length} images another target than their TFRecords do (${examples.join('; ')}): pass the CSV of this set, or leave out --csv; to train on the CSV's labels, use it with the JPEG folder`,
        { file: csv, imageName: conflicts[0].sample.imageName },
      );
    }
    samples = joined;
    // A CSV that matches none of the records is another set's (or not an ISIC CSV at all).
    if (samples.length > 0 && unmatchedInCsv === samples.length)
      throw new DataError(
        'ERR_CSV',
        `${csv}: none of the ${samples.length} images in ${source} has a row there (records start with ${samples[0].imageName}, the CSV with ${rows[0].values.image_name}): pass the CSV of this set, or leave out --csv`,
        { file: csv },
      );
  }
  return { format: 'tfrecord', source, samples, files: perFile, csv: csv ?? null, droppedDuplicates, unmatchedInCsv };
}

async function listJpegs(dir: string): Promise<Set<string> | null> {
  const names = await fsp.readdir(dir).catch(() => null);
  return names ? new Set(names) : null;
}

async function openJpegSet(source: string, csv: string, imageDir: string | undefined, dataDir: string | undefined, dropDuplicates: boolean): Promise<IsicDataset> {
  const rows = await readIsicCsv(csv);
  const kept = dropDuplicates ? rows.filter((r) => !isDuplicateRow(r)) : rows;
  const droppedDuplicates = rows.length - kept.length;
  if (kept.length === 0)
    throw new DataError('ERR_DATASET_EMPTY', `${csv}: all ${rows.length} rows have tfrecord == -1 (duplicates); pass dropDuplicates: false to keep them`, {
      file: csv,
    });
  const csvDir = path.dirname(csv);
  const base = path.basename(csv, path.extname(csv));
  const beside = (dir: string) => [path.join(dir, base), path.join(dir, 'jpeg'), path.join(dir, 'train'), path.join(dir, 'test'), dir];
  // The data folder's own places first when the CSV lives elsewhere, in the same order as beside the CSV.
  const elsewhere = dataDir !== undefined && path.resolve(dataDir) !== path.resolve(csvDir);
  const searched = imageDir ? [imageDir] : [...(elsewhere ? beside(dataDir) : []), ...beside(csvDir)];
  const candidates = [...new Set(searched.map((dir) => path.normalize(dir)))];
  const first = kept.length ? `${kept[0].values.image_name}.jpg` : undefined;
  let dir: string | undefined;
  let names: Set<string> | null = null;
  for (const c of candidates) {
    names = await listJpegs(c);
    if (names && first && names.has(first)) {
      dir = c;
      break;
    }
  }
  if (!dir || !names) {
    throw new DataError(
      'ERR_IMAGE_MISSING',
      `${csv} line ${kept[0]?.line ?? '?'}: no ${first} in ${candidates.join(', ')}. ` +
        'Pass the folder holding <image_name>.jpg as the data (--data DIR --csv CSV; imageDir in the API), or remove the rows without images from the CSV',
      { file: csv, imageName: kept[0]?.values.image_name },
    );
  }
  const missing = kept.filter((r) => !names!.has(`${r.values.image_name}.jpg`));
  if (missing.length) {
    const m = missing[0];
    throw new DataError(
      'ERR_IMAGE_MISSING',
      `${csv} line ${m.line}: ${path.join(dir, `${m.values.image_name}.jpg`)} does not exist ` +
        `(${missing.length} of ${kept.length} rows have no JPEG in ${dir}). Restore the JPEG(s) or remove those rows from the CSV`,
      { file: csv, imageName: m.values.image_name },
    );
  }
  const samples = kept.map((r) => ({ ...sampleFieldsFromCsvRow(csv, r), image: { kind: 'file' as const, path: path.join(dir!, `${r.values.image_name}.jpg`) } }));
  return { format: 'jpeg', source, samples, files: [], csv, droppedDuplicates, unmatchedInCsv: 0 };
}
