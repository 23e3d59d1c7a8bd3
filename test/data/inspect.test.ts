/** inspectDataset: counts, folds, missing metadata, sizes, blank or streaked images, and corrupt files reported rather than thrown. */
import { spawnSync } from 'child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'fs';
import sharp from 'sharp';
import * as path from 'path';
import { formatInspection, inspectDataset } from '../../src/data/inspect';
import * as pkg from '../../src/index';
import { DEFAULT_OPTIONS } from '../../src/model/config';
import { openRunData } from '../../src/train/run';
import { UDA1, UDA1_FILES, describeWithUda1, tempDir } from './helpers';

const CLI = path.resolve(__dirname, '../../dist/cli.js');

describeWithUda1('inspectDataset on uda1-dev', () => {
  const dir = tempDir();

  it('counts files, folds, classes, patients and missing metadata', async () => {
    const r = await inspectDataset(UDA1, { sampleImages: 5 });
    expect(r).toMatchObject({ format: 'tfrecord', images: 300, positives: 83, negatives: 217, unlabeled: 0, patients: 300, foldKind: 'patient', corrupt: [] });
    expect(r.files.map((f) => f.images)).toEqual([60, 60, 60, 60, 60]);
    expect(r.files.reduce((n, f) => n + f.positives, 0)).toBe(83);
    // The folds training makes with its default seed (not the files'): what `train --fold k` validates on.
    const { dataset, assignments } = await openRunData(UDA1, undefined, 5, DEFAULT_OPTIONS.seed, () => undefined, { checkContent: false });
    const trained = [0, 1, 2, 3, 4].map((fold) => dataset.samples.filter((_, i) => assignments[i].fold === fold));
    expect(r.folds.map((f) => [f.images, f.positives])).toEqual(trained.map((samples) => [samples.length, samples.filter((s) => s.target === 1).length]));
    expect(r.missing.anatomSite).toBe(300); // site is -1 for every record
    expect(r.imageSizes).toEqual({ sampled: 5, sizes: [{ width: 250, height: 250, format: 'jpeg', count: 5 }] });
    expect(formatInspection(r)).toContain('300 images, 300 patients, 83 positive / 217 negative');
  });

  it('checks every image with sampleImages Infinity (--sample-images all): half of uda1-dev is streaked', async () => {
    const r = await inspectDataset(UDA1, { sampleImages: Infinity, folds: 0 });
    expect(r.imageSizes.sampled).toBe(300);
    expect(r.degenerate).toHaveLength(150);
    expect(r.degenerate.every((d) => d.defect === 'streaked' && Number(d.imageName.slice(5)) < 150)).toBe(true);
    expect(r.degenerate[0].file).toMatch(/train0\d-60\.tfrec record \d+/);
    const text = formatInspection(r);
    expect(text).toContain('image content (every image): 150 of 300 (50.0%) decode but hold no picture of a lesion:');
    expect(text).toContain('  ... and 140 more (--json lists them all)');
    expect(text).toContain(`If they are broken exports, leave them out: melanoma convert --data ${UDA1} --out NEW_FOLDER --size SIZE --skip-degenerate`);
    expect(text).not.toContain('Check every image');
    expect(r.samePicture).toEqual([
      {
        images: [expect.objectContaining({ imageName: 'ISIC_0000280', patientId: '280', target: 1 }), expect.objectContaining({ imageName: 'ISIC_0000279', patientId: '279', target: 1 })],
        identicalFiles: true,
        distance: 0,
      },
    ]);
    expect(text).toContain('same picture twice (every image): 1 pair(s):\n  ISIC_0000280 and ISIC_0000279: identical files; patients 280 and 279; target 1\n  hint: under two patient ids');
    // A sample says so and names the command that checks them all.
    const sampled = formatInspection(await inspectDataset(UDA1, { sampleImages: 40, folds: 0 }));
    expect(sampled).toMatch(/image content \(40 sampled\): \d+ of 40 /);
    expect(sampled).toContain(`Check every image: melanoma inspect ${UDA1} --sample-images all.`);
    expect(sampled).toContain(`same picture twice: not checked (melanoma inspect ${UDA1} --sample-images all compares every image)`);
    // A CSV given to inspect is carried into the commands it prints.
    const csv = path.join(UDA1, 'train.csv');
    const joined = formatInspection(await inspectDataset(UDA1, { csv, sampleImages: 40, folds: 0 }));
    expect(joined).toContain(`melanoma inspect ${UDA1} --csv ${csv} --sample-images all`);
    expect(joined).toContain(`melanoma convert --data ${UDA1} --csv ${csv} --out NEW_FOLDER --size SIZE --skip-degenerate`);
  });

  it('checks images several at once, reports each as it is done, and gives the same report as one at a time', async () => {
    const seen: number[] = [];
    const parallel = await inspectDataset(UDA1, { sampleImages: 60, folds: 0, workers: 4, onProgress: (p) => seen.push(p.done) });
    expect(seen).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    const serial = await inspectDataset(UDA1, { sampleImages: 60, folds: 0, workers: 1 });
    expect(parallel).toEqual(serial);
    expect(parallel.degenerate.length).toBeGreaterThan(0); // the order kept includes these lists
  });

  (existsSync(CLI) ? it : it.skip)('the inspect command takes --sample-images all and refuses other words', () => {
    const all = spawnSync(process.execPath, [CLI, 'inspect', path.join(UDA1, 'train.csv'), '--sample-images', 'all', '--folds', '0', '--json'], { encoding: 'utf8' });
    expect(all.status).toBe(0);
    const report = JSON.parse(all.stdout);
    expect([report.format, report.imageSizes.sampled, report.degenerate.length]).toEqual(['jpeg', 300, 150]);
    const bad = spawnSync(process.execPath, [CLI, 'inspect', UDA1, '--sample-images', 'some'], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("--sample-images expects an integer >= 0 or 'all' but received 'some'");
  });

  it('lists a corrupt file with its error and still counts the others', async () => {
    for (const f of UDA1_FILES.slice(0, 3)) copyFileSync(f, path.join(dir, path.basename(f)));
    const bad = path.join(dir, path.basename(UDA1_FILES[1]));
    const bytes = readFileSync(bad);
    bytes[5000] ^= 0xff;
    writeFileSync(bad, bytes);
    const r = await inspectDataset(dir, { sampleImages: 0, folds: 2 });
    expect(r.images).toBe(120);
    expect(r.corrupt).toHaveLength(1);
    expect(r.corrupt[0]).toMatchObject({ file: bad, code: 'ERR_TFRECORD_CRC' });
    expect(r.corrupt[0].message).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: record \\d+ at byte \\d+: payload CRC mismatch`));
    expect(formatInspection(r)).toContain('corrupt (1):');
    // The same file inspected alone is reported the same way, not a failure of the command.
    const alone = await inspectDataset(bad, { sampleImages: 0, folds: 0 });
    expect(alone.corrupt).toEqual([r.corrupt[0]]);
  });

  it('images that are empty, not JPEGs or undecodable are listed in the loader\'s words', async () => {
    const jpegs = path.join(dir, 'odd-jpegs');
    mkdirSync(path.join(jpegs, 'train'), { recursive: true });
    const names = ['ISIC_EMPTY', 'ISIC_PNG', 'ISIC_NOISE', 'ISIC_GOOD'];
    writeFileSync(path.join(jpegs, 'train.csv'), ['image_name,patient_id,target', ...names.map((n, i) => `${n},P${i},${i % 2}`)].join('\n') + '\n');
    const good = readFileSync(path.join(UDA1, 'jpeg', 'ISIC_0000041.jpg'));
    writeFileSync(path.join(jpegs, 'train', 'ISIC_EMPTY.jpg'), Buffer.alloc(0));
    writeFileSync(path.join(jpegs, 'train', 'ISIC_PNG.jpg'), await sharp(good).png().toBuffer());
    writeFileSync(path.join(jpegs, 'train', 'ISIC_NOISE.jpg'), Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(200, 7)]));
    writeFileSync(path.join(jpegs, 'train', 'ISIC_GOOD.jpg'), good);
    const r = await inspectDataset(path.join(jpegs, 'train.csv'), { sampleImages: Infinity, folds: 0 });
    const byName = new Map(r.corrupt.map((c) => [names.find((n) => c.message.includes(n)), c]));
    expect([...byName.keys()].sort()).toEqual(['ISIC_EMPTY', 'ISIC_NOISE', 'ISIC_PNG']);
    expect(byName.get('ISIC_EMPTY')).toMatchObject({ code: 'ERR_IMAGE_FORMAT', message: expect.stringContaining('is an empty file (0 bytes), not a JPEG: the pipeline reads JPEGs only') });
    expect(byName.get('ISIC_PNG')).toMatchObject({ code: 'ERR_IMAGE_FORMAT', message: expect.stringContaining('is a PNG image, not a JPEG') });
    expect(byName.get('ISIC_NOISE')).toMatchObject({ code: 'ERR_IMAGE_DECODE', message: expect.stringMatching(/^Cannot decode ISIC_NOISE from .*ISIC_NOISE\.jpg: .*\. The JPEG is damaged: replace it or remove it from the dataset$/) });
  });
});

const largeDir = tempDir();

test('large images get the hint to convert them once; small ones do not', async () => {
  mkdirSync(path.join(largeDir, 'train'));
  const rows = ['image_name,patient_id,sex,age_approx,anatom_site_general_challenge,target'];
  for (let i = 0; i < 3; i++) {
    rows.push(`ISIC_${i},IP_${i},male,50,torso,${i % 2}`);
    await sharp({ create: { width: i < 2 ? 1600 : 300, height: i < 2 ? 1200 : 200, channels: 3, background: '#a07060' } }).jpeg().toFile(path.join(largeDir, 'train', `ISIC_${i}.jpg`));
  }
  writeFileSync(path.join(largeDir, 'train.csv'), rows.join('\n') + '\n');
  const r = await inspectDataset(largeDir, { sampleImages: 3 });
  expect(formatInspection(r)).toContain(`  hint: 2 of 3 sampled images are over 1024 px; decoding them will dominate every epoch. Convert once: melanoma convert --data ${largeDir} --size 512 --out NEW_FOLDER`);
  const small = { ...r, imageSizes: { sampled: 3, sizes: [{ width: 256, height: 256, format: 'jpeg', count: 3 }] } };
  expect(formatInspection(small)).not.toContain('over 1024 px');
});

test('the package exports the data checks (inspect, blank/streaked images, the same picture twice)', () => {
  expect([pkg.inspectDataset, pkg.formatInspection]).toEqual([inspectDataset, formatInspection]);
  expect([typeof pkg.assessImageContent, typeof pkg.findSamePictures, typeof pkg.sampleDegenerateImages]).toEqual(['function', 'function', 'function']);
});

test('a sample size that is neither a count nor Infinity is refused, naming the option', async () => {
  for (const bad of [-1, 2.5, NaN])
    await expect(inspectDataset(largeDir, { sampleImages: bad })).rejects.toThrow(new RangeError(`Expected integer >= 0 or Infinity for sampleImages but received ${bad}`));
});
