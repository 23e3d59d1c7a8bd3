/** Opening SIIM-ISIC datasets: both layouts, the CSV join, duplicates, and bad inputs with exact errors. */
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { DataError } from '../../src/data/errors';
import { ImageBytesReader } from '../../src/data/images';
import { openDataset, readIsicCsv } from '../../src/data/isic';
import { encodeExample, writeTfRecordFile } from '../../src/data/tfrecord';
import { UDA1, describeWithUda1, tempDir, dataError } from './helpers';


const CSV_HEADER = 'image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target,tfrecord';

/** A small JPEG + CSV set made with sharp (no shared data needed). */
async function makeJpegSet(dir: string, n: number, options: { missing?: string; duplicates?: number } = {}): Promise<string[]> {
  mkdirSync(path.join(dir, 'train'), { recursive: true });
  const names: string[] = [];
  const rows = [CSV_HEADER];
  for (let i = 0; i < n; i++) {
    const name = `ISIC_${String(9000000 + i)}`;
    names.push(name);
    const dup = i < (options.duplicates ?? 0) ? -1 : 0;
    rows.push(`${name},IP_${i % 3},${i % 2 ? 'male' : 'female'},${40 + i}.0,"head/neck",nevus,benign,${i % 4 === 0 ? 1 : 0},${dup}`);
    if (name !== options.missing)
      await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: 10 * i, g: 100, b: 50 } } })
        .jpeg()
        .toFile(path.join(dir, 'train', `${name}.jpg`));
  }
  writeFileSync(path.join(dir, 'train.csv'), rows.join('\n') + '\n');
  return names;
}

describe('JPEG + CSV layout (generated)', () => {
  const root = tempDir();

  it('reads rows into samples with text metadata, finding train/ next to train.csv', async () => {
    const dir = path.join(root, 'ok');
    const names = await makeJpegSet(dir, 6);
    const ds = await openDataset(dir);
    expect(ds).toMatchObject({ format: 'jpeg', csv: path.join(dir, 'train.csv'), droppedDuplicates: 0, files: [] });
    expect(ds.samples.map((s) => s.imageName)).toEqual(names);
    expect(ds.samples[1]).toEqual({
      imageName: names[1],
      patientId: 'IP_1',
      target: 0,
      sex: 'male',
      ageApprox: 41,
      anatomSite: 'head/neck',
      diagnosis: 'nevus',
      image: { kind: 'file', path: path.join(dir, 'train', `${names[1]}.jpg`) },
    });
    // The CSV path itself opens the same set.
    expect((await openDataset(path.join(dir, 'train.csv'))).samples).toEqual(ds.samples);
    // Copies of the JPEGs beside train.csv too: train/ is still where they are read from.
    for (const name of names) copyFileSync(path.join(dir, 'train', `${name}.jpg`), path.join(dir, `${name}.jpg`));
    expect((await openDataset(dir)).samples.map((s) => s.image)).toEqual(ds.samples.map((s) => s.image));
  });

  it('drops tfrecord == -1 rows and reports how many', async () => {
    const dir = path.join(root, 'dups');
    await makeJpegSet(dir, 6, { duplicates: 2 });
    const ds = await openDataset(dir);
    expect(ds.samples).toHaveLength(4);
    expect(ds.droppedDuplicates).toBe(2);
    expect((await openDataset(dir, { dropDuplicates: false })).samples).toHaveLength(6);
  });

  it('a CSV row whose JPEG is missing: ERR_IMAGE_MISSING naming line, path and count', async () => {
    const dir = path.join(root, 'missing');
    const names = await makeJpegSet(dir, 5, { missing: 'ISIC_9000003' });
    const err = await dataError(() => openDataset(dir));
    expect(err.code).toBe('ERR_IMAGE_MISSING');
    expect(err.imageName).toBe(names[3]);
    expect(err.message).toBe(
      `${path.join(dir, 'train.csv')} line 5: ${path.join(dir, 'train', 'ISIC_9000003.jpg')} does not exist ` +
        `(1 of 5 rows have no JPEG in ${path.join(dir, 'train')}). Restore the JPEG(s) or remove those rows from the CSV`,
    );
  });

  it('an empty folder: ERR_DATASET_EMPTY saying what to point at', async () => {
    const dir = path.join(root, 'empty');
    mkdirSync(dir);
    const err = await dataError(() => openDataset(dir));
    expect(err).toMatchObject({ code: 'ERR_DATASET_EMPTY', file: dir });
    expect(err.message).toBe(
      `${dir}: no *.tfrec files and no CSV found. Point at a folder of SIIM-ISIC TFRecords (trainNN-COUNT.tfrec) ` +
        'or at a folder holding train.csv (or test.csv) and its JPEGs',
    );
    const forced = await dataError(() => openDataset(dir, { format: 'tfrecord' }));
    expect(forced.message).toBe(`${dir}: no *.tfrec files found. Point at the folder holding trainNN-COUNT.tfrec files`);
  });

  it('a path that does not exist: ERR_DATASET_NOT_FOUND', async () => {
    const p = path.join(root, 'nowhere');
    expect((await dataError(() => openDataset(p))).code).toBe('ERR_DATASET_NOT_FOUND');
  });

  it('CSV problems: missing column, bad target, bad age (ERR_CSV with line)', async () => {
    const dir = path.join(root, 'badcsv');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'a.csv'), 'image_name,sex\nISIC_1,male\n');
    expect((await dataError(() => readIsicCsv(path.join(dir, 'a.csv')))).message).toBe(
      `${path.join(dir, 'a.csv')}: missing column(s) patient_id (found: image_name, sex). ` +
        'An ISIC CSV has image_name, patient_id, sex, age_approx, anatom_site_general_challenge[, diagnosis, benign_malignant, target].',
    );
    await makeJpegSet(path.join(dir, 't'), 2);
    const csv = path.join(dir, 't', 'train.csv');
    writeFileSync(csv, readFileSync(csv, 'utf8').replace(',benign,0,0\n', ',benign,yes,0\n'));
    expect((await dataError(() => openDataset(csv))).message).toBe(`${csv} line 3: target must be 0 or 1 but is 'yes' (image ISIC_9000001)`);
    writeFileSync(csv, `${CSV_HEADER}\nISIC_9000000,IP_0,male,forty,,nevus,benign,0,0\n`);
    expect((await dataError(() => openDataset(csv))).message).toBe(`${csv} line 2: age_approx must be a number but is 'forty' (image ISIC_9000000)`);
  });
});

describe('CSV mistakes found before any work', () => {
  const root = tempDir();

  it('a --csv that does not exist or is a folder: ERR_CSV naming it (it used to crash with an unhandled stream error)', async () => {
    const missing = path.join(root, 'nope.csv');
    expect((await dataError(() => readIsicCsv(missing))).message).toBe(`${missing} does not exist: pass the path of an ISIC CSV (image_name, patient_id, ...)`);
    expect((await dataError(() => readIsicCsv(root))).message).toBe(`${root} is a folder, not a CSV: pass the path of an ISIC CSV (image_name, patient_id, ...)`);
    const dir = path.join(root, 'joined');
    await makeJpegSet(dir, 3);
    expect(await dataError(() => openDataset(dir, { csv: missing }))).toMatchObject({ code: 'ERR_CSV', file: missing });
  });

  it('an image name on two rows is refused with both lines (it used to fail cv after folds had trained)', async () => {
    const dir = path.join(root, 'repeated');
    await makeJpegSet(dir, 4);
    const csv = path.join(dir, 'train.csv');
    const lines = readFileSync(csv, 'utf8').trimEnd().split('\n');
    writeFileSync(csv, [...lines, lines[2].replace('IP_1', 'IP_9'), lines[3]].join('\n') + '\n');
    const err = await dataError(() => openDataset(dir));
    expect(err).toMatchObject({ code: 'ERR_DATASET_DUPLICATE', file: csv, imageName: 'ISIC_9000001' });
    expect(err.message).toBe(
      `${csv}: 2 image name(s) appear more than once (ISIC_9000001 at line 3 and line 6; ISIC_9000002 at line 4 and line 7): ` +
        'each image must appear once; remove the repeated rows from the CSV',
    );
  });

  it("a --csv joined to TFRecords that matches none of them is another set's: refused, naming both first names", async () => {
    const dir = path.join(root, 'other-csv');
    mkdirSync(dir);
    const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).jpeg().toBuffer();
    await writeTfRecordFile(path.join(dir, 'train00-2.tfrec'), ['A', 'B'].map((name) => encodeExample({ image: jpeg, image_name: name, patient_id: 'P', target: 0 })));
    const other = path.join(root, 'other.csv');
    writeFileSync(other, 'image_name,patient_id,target\nX1,P1,0\n');
    expect((await dataError(() => openDataset(dir, { csv: other }))).message).toBe(
      `${other}: none of the 2 images in ${dir} has a row there (records start with A, the CSV with X1): pass the CSV of this set, or leave out --csv`,
    );
    writeFileSync(other, 'image_name,patient_id,target\nB,P1,0\n');
    expect(await openDataset(dir, { csv: other })).toMatchObject({ unmatchedInCsv: 1 });
  });

  it('TFRecords holding one image name twice are refused, naming both records', async () => {
    const dir = path.join(root, 'repeated-records');
    mkdirSync(dir);
    const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).jpeg().toBuffer();
    const record = (name: string) => encodeExample({ image: jpeg, image_name: name, patient_id: 'P', target: 0 });
    await writeTfRecordFile(path.join(dir, 'train00-2.tfrec'), [record('A'), record('B')]);
    await writeTfRecordFile(path.join(dir, 'train01-1.tfrec'), [record('A')]);
    const err = await dataError(() => openDataset(dir));
    expect(err.code).toBe('ERR_DATASET_DUPLICATE');
    expect(err.message).toMatch(new RegExp(`^${dir}: 1 image name\\(s\\) appear more than once \\(A at .*train00-2\\.tfrec record 0 .* and .*train01-1\\.tfrec record 0 `));
  });
});

describe('TFRecord layout (generated)', () => {
  const root = tempDir();

  it('a record without `image`: ERR_EXAMPLE_FEATURE naming file, record, offset and the features present', async () => {
    const file = path.join(root, 'noimage00-2.tfrec');
    const jpeg = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).jpeg().toBuffer();
    await writeTfRecordFile(file, [encodeExample({ image: jpeg, image_name: 'ok' }), encodeExample({ image_name: 'ISIC_1', target: 1 })]);
    const err = await dataError(() => openDataset(root));
    const offset = 12 + encodeExample({ image: jpeg, image_name: 'ok' }).length + 4 + 12;
    expect(err).toMatchObject({ code: 'ERR_EXAMPLE_FEATURE', file, recordIndex: 1, offset });
    expect(err.message).toBe(
      `${file}: record 1 at byte ${offset}: no 'image' feature (features present: image_name, target). ` +
        'Expected a SIIM-ISIC record with image, image_name, patient_id, sex, age_approx, anatom_site_general_challenge[, diagnosis, target].',
    );
  });

  it('a malformed Example in a file names the file and record', async () => {
    const dir = path.join(root, 'malformed');
    mkdirSync(dir);
    const file = path.join(dir, 'x.tfrec');
    await writeTfRecordFile(file, [Buffer.from([0x0a, 0x05, 0x00])]);
    const err = await dataError(() => openDataset(dir));
    expect(err).toMatchObject({ code: 'ERR_EXAMPLE_MALFORMED', file, recordIndex: 0 });
    expect(err.message).toBe(
      `${file}: record 0 at byte 12: Malformed tf.train.Example: features claims 5 bytes but only 1 remain in its enclosing message at byte 1 of the payload`,
    );
  });
});

describeWithUda1('uda1-dev, both layouts', () => {
  const root = tempDir();

  it('TFRecords: 300 samples, 5 files of 60, 83 positives; image spans are the JPEGs', async () => {
    const ds = await openDataset(UDA1);
    expect(ds.format).toBe('tfrecord');
    expect(ds.files.map((f) => [path.basename(f.file), f.records])).toEqual([0, 1, 2, 3, 4].map((i) => [`train0${i}-60.tfrec`, 60]));
    expect(ds.samples).toHaveLength(300);
    expect(ds.samples.filter((s) => s.target === 1)).toHaveLength(83);
    const reader = new ImageBytesReader();
    try {
      for (const s of ds.samples.slice(0, 20)) expect((await reader.read(s.image)).equals(readFileSync(path.join(UDA1, 'jpeg', `${s.imageName}.jpg`)))).toBe(true);
    } finally {
      await reader.close();
    }
  });

  it('TFRecords joined with train.csv carry the same metadata as the JPEG layout', async () => {
    const joined = await openDataset(UDA1, { csv: path.join(UDA1, 'train.csv') });
    const jpeg = await openDataset(UDA1, { format: 'jpeg' });
    expect(jpeg.format).toBe('jpeg');
    expect(joined.unmatchedInCsv).toBe(0);
    const byName = new Map(jpeg.samples.map((s) => [s.imageName, s]));
    expect(joined.samples).toHaveLength(300);
    for (const s of joined.samples) {
      const { image: _a, ...meta } = s;
      const { image: _b, ...expected } = byName.get(s.imageName)!;
      expect(meta).toEqual(expected);
    }
    expect(jpeg.samples[0].image).toEqual({ kind: 'file', path: path.join(UDA1, 'jpeg', `${jpeg.samples[0].imageName}.jpg`) });
  });

  it("a --csv whose targets disagree with the TFRecords' is refused, naming the first images (it used to be ignored silently)", async () => {
    const lines = readFileSync(path.join(UDA1, 'train.csv'), 'utf8').trim().split('\n');
    const target = lines[0].split(',').indexOf('target');
    // The targets of the first two images flipped, as in a CSV of another labelling.
    const flipped = lines.map((line, i) => (i === 1 || i === 2 ? line.split(',').map((v, c) => (c === target ? String(1 - Number(v)) : v)).join(',') : line));
    const csv = path.join(root, 'flipped.csv');
    writeFileSync(csv, flipped.join('\n') + '\n');
    const [first, second] = [1, 2].map((i) => lines[i].split(',')[0]);
    const err = await dataError(() => openDataset(UDA1, { csv }));
    expect(err).toMatchObject({ code: 'ERR_CSV', file: csv });
    expect(err.message).toMatch(
      new RegExp(`^${csv.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} gives 2 of 300 images another target than their TFRecords do \\((${first}|${second}): [01] in \\S+train0\\d-60\\.tfrec record \\d+ \\(JPEG at byte \\d+\\), [01] in the CSV; (${first}|${second}): .*\\): pass the CSV of this set, or leave out --csv; to train on the CSV's labels, use it with the JPEG folder$`),
    );
  });

  it('a folder of JPEGs given with a CSV kept elsewhere: the JPEGs are found in that folder', async () => {
    const csv = path.join(root, 'elsewhere', 'labels.csv');
    mkdirSync(path.dirname(csv), { recursive: true });
    copyFileSync(path.join(UDA1, 'train.csv'), csv);
    const ds = await openDataset(path.join(UDA1, 'jpeg'), { csv });
    expect(ds.samples).toHaveLength(300);
    expect(ds.samples[0].image).toEqual({ kind: 'file', path: path.join(UDA1, 'jpeg', `${ds.samples[0].imageName}.jpg`) });
  });

  it('the integer codes of the files become strings; -1 becomes null', async () => {
    const ds = await openDataset(path.join(UDA1, 'train00-60.tfrec'));
    for (const s of ds.samples) {
      expect(s.anatomSite).toBeNull();
      expect([null, '0', '1']).toContain(s.sex);
      expect(['0', '1', '2']).toContain(s.diagnosis);
      expect(s.patientId).toMatch(/^\d+$/);
    }
  });

  it('JPEG layout with one JPEG missing (symlinked copy of uda1-dev)', async () => {
    const dir = path.join(root, 'one-missing');
    mkdirSync(path.join(dir, 'jpeg'), { recursive: true });
    copyFileSync(path.join(UDA1, 'train.csv'), path.join(dir, 'train.csv'));
    const rows = await readIsicCsv(path.join(dir, 'train.csv'));
    for (const r of rows.slice(0, -1)) symlinkSync(path.join(UDA1, 'jpeg', `${r.values.image_name}.jpg`), path.join(dir, 'jpeg', `${r.values.image_name}.jpg`));
    const last = rows[rows.length - 1];
    const err = await dataError(() => openDataset(dir));
    expect(err.message).toBe(
      `${path.join(dir, 'train.csv')} line ${last.line}: ${path.join(dir, 'jpeg', `${last.values.image_name}.jpg`)} does not exist ` +
        `(1 of 300 rows have no JPEG in ${path.join(dir, 'jpeg')}). Restore the JPEG(s) or remove those rows from the CSV`,
    );
  });
});
