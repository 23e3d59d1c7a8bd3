/** inspectDataset: counts, folds, missing metadata, sizes, and corrupt files reported rather than thrown. */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'fs';
import sharp from 'sharp';
import * as path from 'path';
import { formatInspection, inspectDataset } from '../../src/data/inspect';
import { UDA1, UDA1_FILES, describeWithUda1, tempDir } from './helpers';

describeWithUda1('inspectDataset on uda1-dev', () => {
  const dir = tempDir();

  it('counts files, folds, classes, patients and missing metadata', async () => {
    const r = await inspectDataset(UDA1, { sampleImages: 5 });
    expect(r).toMatchObject({ format: 'tfrecord', images: 300, positives: 83, negatives: 217, unlabeled: 0, patients: 300, foldKind: 'file', corrupt: [] });
    expect(r.files.map((f) => f.images)).toEqual([60, 60, 60, 60, 60]);
    expect(r.files.reduce((n, f) => n + f.positives, 0)).toBe(83);
    expect(r.folds.map((f) => f.images)).toEqual([60, 60, 60, 60, 60]);
    expect(r.missing.anatomSite).toBe(300); // site is -1 for every record
    expect(r.imageSizes).toEqual({ sampled: 5, sizes: [{ width: 250, height: 250, format: 'jpeg', count: 5 }] });
    expect(formatInspection(r)).toContain('300 images, 300 patients, 83 positive / 217 negative');
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
  expect(formatInspection(small)).not.toContain('hint:');
});
