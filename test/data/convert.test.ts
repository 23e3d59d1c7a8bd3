/**
 * `convert`: a JPEG + CSV set (and a TFRecord set) into patient-grouped, stratified SIIM-ISIC
 * TFRecords of square JPEGs; the converted set reads back with the same samples and nearly the
 * same pixels, bad images stop it (or are skipped and listed), and nothing existing is touched.
 */
import { spawnSync } from 'child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { CONVERT_MANIFEST, ConvertInterruptedError, codeOrText, convertDataset } from '../../src/data/convert';
import { ensureDemoDataset } from '../../src/data/demo';
import { ImageBytesReader, decodeImage } from '../../src/data/images';
import { openDataset } from '../../src/data/isic';
import { parseExample, readTfRecordFile } from '../../src/data/tfrecord';
import type { LesionSample } from '../../src/data/types';
import { dataError, tempDir } from './helpers';

const CLI = path.resolve(__dirname, '../../dist/cli.js');
const root = tempDir();

const SITES = ['torso', 'head/neck', 'lower extremity', ''];

/** 18 JPEGs of varied sizes and contents, 9 patients with 2 images each, 6 melanomas; text metadata. */
async function jpegSet(
  dir: string,
  { withTarget = true, corrupt, degenerate = {} }: { withTarget?: boolean; corrupt?: string; degenerate?: Record<string, 'blank' | 'streaked'> } = {},
): Promise<string> {
  mkdirSync(path.join(dir, 'train'), { recursive: true });
  const rows = [`image_name,patient_id,sex,age_approx,anatom_site_general_challenge,diagnosis${withTarget ? ',target' : ''}`];
  for (let i = 0; i < 18; i++) {
    const name = `ISIC_${String(1000 + i)}`;
    const target = i % 3 === 0 ? 1 : 0;
    rows.push(`${name},IP_${Math.floor(i / 2)},${i % 2 ? 'male' : 'female'},${i === 5 ? '' : `${30 + i}.0`},"${SITES[i % 4]}",${target ? 'melanoma' : 'nevus'}${withTarget ? `,${target}` : ''}`);
    const file = path.join(dir, 'train', `${name}.jpg`);
    if (name === corrupt) writeFileSync(file, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
    else if (degenerate[name] === 'blank') await sharp({ create: { width: 150, height: 100, channels: 3, background: '#c09080' } }).jpeg().toFile(file);
    else if (degenerate[name] === 'streaked') {
      // One line of colours stretched down the whole frame, as a broken export leaves it.
      const line = Buffer.alloc(150 * 3);
      for (let x = 0; x < 150; x++) line.set([120 + ((x * 37) % 90), 90 + ((x * 11) % 60), 80], x * 3);
      await sharp(Buffer.concat(Array.from({ length: 100 }, () => line)), { raw: { width: 150, height: 100, channels: 3 } }).jpeg({ quality: 92 }).toFile(file);
    } else {
      // A gradient with a dark blob, so resizing and re-encoding have detail to get wrong.
      const w = 120 + 10 * i, h = 80 + 5 * i;
      const pixels = Buffer.alloc(w * h * 3);
      for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++) {
          const blob = (x - w / 2) ** 2 + (y - h / 2) ** 2 < (h / 4) ** 2;
          pixels.set(blob ? [60, 30, 20 + i] : [(255 * x) / w, (255 * y) / h, 128 + 4 * i], (y * w + x) * 3);
        }
      await sharp(pixels, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 92 }).toFile(file);
    }
  }
  writeFileSync(path.join(dir, withTarget ? 'train.csv' : 'test.csv'), rows.join('\n') + '\n');
  return dir;
}

const fields = (s: LesionSample) => ({ imageName: s.imageName, patientId: s.patientId, target: s.target, sex: s.sex, ageApprox: s.ageApprox, anatomSite: s.anatomSite, diagnosis: s.diagnosis });
const byName = (a: { imageName: string }, b: { imageName: string }) => a.imageName.localeCompare(b.imageName);

test('JPEG + CSV to 3 patient-grouped, stratified files at 64 px: same samples, nearly the same pixels', async () => {
  const source = await jpegSet(path.join(root, 'jpeg'));
  const out = path.join(root, 'converted');
  const lines: string[] = [];
  const result = await convertDataset({ data: source, out, size: 64, files: 3, workers: 3, log: (l) => lines.push(l) });

  expect(result.files.map((f) => f.file)).toEqual(['train00-6.tfrec', 'train01-6.tfrec', 'train02-6.tfrec']);
  expect(result.files.map((f) => f.melanomas)).toEqual([2, 2, 2]);
  expect(result.degenerate).toEqual([]); // gradients with a blob: varied, not streaked
  expect(readdirSync(out).sort()).toEqual([CONVERT_MANIFEST, 'train00-6.tfrec', 'train01-6.tfrec', 'train02-6.tfrec']);
  expect(lines[0]).toBe(`converting 18 images (jpeg, 9 patients) from ${source} to 3 TFRecord file(s) of 64x64 JPEGs (quality 95, fit fill) in ${out}`);

  const original = (await openDataset(source)).samples;
  const converted = await openDataset(out);
  expect(converted.format).toBe('tfrecord');
  expect(converted.samples.map(fields).sort(byName)).toEqual(original.map(fields).sort(byName));
  // Every patient lies in one file.
  const filesOf = new Map<string, Set<string>>();
  for (const s of converted.samples) filesOf.set(s.patientId, (filesOf.get(s.patientId) ?? new Set()).add(s.image.kind === 'tfrecord' ? s.image.file : ''));
  expect([...filesOf.values()].every((f) => f.size === 1)).toBe(true);

  // The stored 64 px image decodes to what the loader makes of the original at 64 px, up to JPEG.
  const reader = new ImageBytesReader();
  try {
    for (const s of converted.samples.slice(0, 4)) {
      const stored = await reader.read(s.image);
      expect((await sharp(stored).metadata()).width).toBe(64);
      const fromOriginal = await decodeImage(await reader.read(original.find((o) => o.imageName === s.imageName)!.image), { size: 64 });
      const fromStored = await decodeImage(stored, { size: 64 });
      const meanDifference = fromStored.reduce((sum, v, i) => sum + Math.abs(v - fromOriginal[i]), 0) / fromStored.length;
      expect(meanDifference).toBeLessThan(3);
    }
  } finally {
    await reader.close();
  }
  const manifest = JSON.parse(readFileSync(path.join(out, CONVERT_MANIFEST), 'utf8'));
  expect(manifest).toMatchObject({ source, sourceFormat: 'jpeg', size: 64, fit: 'fill', quality: 95, images: 18, skipped: [] });
});

test('an existing folder is refused before any work; a missing source is named', async () => {
  const out = path.join(root, 'exists');
  mkdirSync(out);
  writeFileSync(path.join(out, 'mine.txt'), 'keep');
  await expect(convertDataset({ data: path.join(root, 'jpeg'), out, size: 64 })).rejects.toThrow(`${out} already exists and was left untouched: convert into a new folder`);
  expect(readdirSync(out)).toEqual(['mine.txt']);
  const missing = await dataError(() => convertDataset({ data: path.join(root, 'nowhere'), out: path.join(root, 'never'), size: 64 }));
  expect(missing.code).toBe('ERR_DATASET_NOT_FOUND');
  await expect(convertDataset({ data: path.join(root, 'jpeg'), out: path.join(root, 'never'), size: 8 })).rejects.toThrow('Expected integer between 32 and 4096 for size but received 8');
  expect(existsSync(path.join(root, 'never'))).toBe(false);
});

test('more --files than patients: one patient a file at most, said so; a file whose images are all left out is not written, and the names run on', async () => {
  const source = await jpegSet(path.join(root, 'many-files'), { corrupt: 'ISIC_1007' });
  writeFileSync(path.join(source, 'train', 'ISIC_1006.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3])); // IP_3's other image
  const lines: string[] = [];
  const result = await convertDataset({ data: source, out: path.join(root, 'many-files-out'), size: 32, files: 20, skipBadImages: true, log: (l) => lines.push(l) });
  expect(lines[0]).toContain('to 9 TFRecord file(s) (--files 20 is more than the 9 patients, and a patient is never split)');
  expect(lines.filter((l) => /^every image of file [1-9] of 9 was left out: no file written for it$/.test(l))).toHaveLength(1);
  expect(result.files.map((f) => f.file.split('-')[0])).toEqual(['train00', 'train01', 'train02', 'train03', 'train04', 'train05', 'train06', 'train07']);
  expect(result.files.every((f) => f.images === 2)).toBe(true);
  expect((await openDataset(result.out)).samples).toHaveLength(16);
});

test('an undecodable JPEG stops it with the name and leaves nothing; with skipBadImages it is listed', async () => {
  const source = await jpegSet(path.join(root, 'bad'), { corrupt: 'ISIC_1007' });
  const out = path.join(root, 'bad-out');
  const err = await dataError(() => convertDataset({ data: source, out, size: 48, files: 3 }));
  expect(err.code).toBe('ERR_IMAGE_DECODE');
  expect(err.message).toMatch(/^Cannot decode ISIC_1007 from .*ISIC_1007\.jpg: .*The JPEG is damaged: replace it or remove it from the dataset$/);
  expect(readdirSync(root).filter((n) => n.startsWith('bad-out'))).toEqual([]); // no folder, no staging

  const result = await convertDataset({ data: source, out, size: 48, files: 3, skipBadImages: true });
  expect(result.images).toBe(17);
  expect(result.skipped).toHaveLength(1);
  expect(result.skipped[0]).toMatchObject({ imageName: 'ISIC_1007', source: path.join(source, 'train', 'ISIC_1007.jpg') });
  // The same words as the refusal. Not compared with err.message exactly: a full run once failed
  // on that comparison (libvips' own text in the middle can differ between two decodes).
  expect(result.skipped[0].reason).toMatch(/^Cannot decode ISIC_1007 from .*ISIC_1007\.jpg: .*The JPEG is damaged: replace it or remove it from the dataset$/s);
  expect(JSON.parse(readFileSync(path.join(out, CONVERT_MANIFEST), 'utf8')).skipped).toHaveLength(1);
  expect((await openDataset(out)).samples).toHaveLength(17);
});

test('blank and streaked images are listed in the manifest and the summary; with skipDegenerate they are left out', async () => {
  const source = await jpegSet(path.join(root, 'degenerate'), { degenerate: { ISIC_1004: 'blank', ISIC_1011: 'streaked' } });
  const kept = await convertDataset({ data: source, out: path.join(root, 'degenerate-kept'), size: 48, files: 3 });
  expect(kept.images).toBe(18);
  expect(kept.degenerate.map((d) => d.imageName)).toEqual(['ISIC_1004', 'ISIC_1011']); // by name, whatever order the workers finished in
  expect(kept.degenerate.find((d) => d.imageName === 'ISIC_1004')).toMatchObject({ source: path.join(source, 'train', 'ISIC_1004.jpg'), detail: expect.stringMatching(/^blank: one colour/) });
  expect(kept.degenerate.find((d) => d.imageName === 'ISIC_1011')!.detail).toMatch(/^streaked: every row (the same|nearly the same)/);
  expect(JSON.parse(readFileSync(path.join(root, 'degenerate-kept', CONVERT_MANIFEST), 'utf8'))).toMatchObject({ skipDegenerate: false, degenerate: [{}, {}] });

  const left = await convertDataset({ data: source, out: path.join(root, 'degenerate-left'), size: 48, files: 3, skipDegenerate: true });
  expect(left.images).toBe(16);
  expect(left.degenerate).toHaveLength(2);
  expect((await openDataset(path.join(root, 'degenerate-left'))).samples.map((s) => s.imageName)).not.toContain('ISIC_1011');
  expect(JSON.parse(readFileSync(path.join(root, 'degenerate-left', CONVERT_MANIFEST), 'utf8'))).toMatchObject({ images: 16, skipDegenerate: true });

  if (!existsSync(CLI)) return;
  const run = (out: string, ...extra: string[]) =>
    spawnSync(process.execPath, [CLI, 'convert', '--data', source, '--out', path.join(root, out), '--size', '40', '--files', '2', ...extra], { encoding: 'utf8' });
  const warned = run('degenerate-cli');
  expect(warned.status).toBe(0);
  expect(warned.stdout).toMatch(/\nwrote \S+: 18 images in 2 file\(s\)\nwarning: 2 converted image\(s\) are blank or streaked and hold no picture of a lesion \(ISIC_10(04|11), ISIC_10(04|11); manifest\.json "degenerate" lists them\); convert again with --skip-degenerate to leave them out\n$/);
  const skipped = run('degenerate-cli-skip', '--skip-degenerate');
  expect(skipped.status).toBe(0);
  expect(skipped.stdout).toMatch(/\nwrote \S+: 16 images in 2 file\(s\), 2 left out \(listed in manifest\.json\)\nleft out 2 blank or streaked image\(s\)/);
});

test('after a failure the other workers stop: nothing is decoded once the error is out', async () => {
  const source = await jpegSet(path.join(root, 'bad-first'), { corrupt: 'ISIC_1000' });
  let progress = 0;
  await expect(convertDataset({ data: source, out: path.join(root, 'bad-first-out'), size: 48, files: 1, workers: 3, onProgress: () => progress++ })).rejects.toThrow(/Cannot decode ISIC_1000/);
  const atRejection = progress;
  expect(atRejection).toBeLessThanOrEqual(2); // the images already in flight beside the bad one
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(progress).toBe(atRejection);
  expect(existsSync(path.join(root, 'bad-first-out'))).toBe(false);
});

test('a set without targets becomes testNN files; integer codes of a TFRecord set stay int64; "0012" stays text', async () => {
  expect([codeOrText('3'), codeOrText('-1'), codeOrText('0'), codeOrText('0012'), codeOrText('IP_7'), codeOrText('male')]).toEqual([3, -1, 0, '0012', 'IP_7', 'male']);
  const test = await convertDataset({ data: await jpegSet(path.join(root, 'test-set'), { withTarget: false }), out: path.join(root, 'test-out'), size: 32, files: 2 });
  expect(test.files.map((f) => f.file.replace(/-\d+/, ''))).toEqual(['test00.tfrec', 'test01.tfrec']);
  expect(test.files.map((f) => f.images).sort((a, b) => a - b)).toEqual([8, 10]); // 9 patients of 2 images: 5 and 4
  expect((await openDataset(path.join(root, 'test-out'))).samples.every((s) => s.target === null)).toBe(true);

  const demo = await ensureDemoDataset({ dir: path.join(root, 'demo'), images: 16, files: 2, size: 48 });
  const out = path.join(root, 'demo-out');
  await convertDataset({ data: demo, out, size: 32, files: 1 });
  expect((await openDataset(out)).samples.map(fields).sort(byName)).toEqual((await openDataset(demo)).samples.map(fields).sort(byName));
  const [file] = readdirSync(out).filter((n) => n.endsWith('.tfrec'));
  for await (const record of readTfRecordFile(path.join(out, file))) {
    const features = parseExample(record.payload);
    expect([features.sex.kind, features.anatom_site_general_challenge.kind, features.patient_id.kind, features.target.kind]).toEqual(['int64', 'int64', 'int64', 'int64']);
    break;
  }
});

(existsSync(CLI) ? test : test.skip)('the convert command: a summary line, and exit 2 for an existing folder', () => {
  const out = path.join(root, 'cli-out');
  const args = [CLI, 'convert', '--data', path.join(root, 'jpeg'), '--out', out, '--size', '40', '--files', '2', '--workers', '2'];
  const first = spawnSync(process.execPath, args, { encoding: 'utf8' });
  expect(first.stderr).toBe('');
  expect(first.status).toBe(0);
  expect(first.stdout).toMatch(/\ntrain00-\d+\.tfrec: \d+ images, 3 melanoma, \d patients\n/);
  expect(first.stdout).toMatch(new RegExp(`\\nwrote ${out}: 18 images in 2 file\\(s\\)\\n$`));
  const again = spawnSync(process.execPath, args, { encoding: 'utf8' });
  expect(again.status).toBe(2);
  expect(again.stderr).toContain(`error: ${out} already exists and was left untouched: convert into a new folder`);
  // A damaged JPEG is the user's data, not command-line syntax: one line, no "--help" hint.
  const damaged = spawnSync(process.execPath, [CLI, 'convert', '--data', path.join(root, 'bad'), '--out', path.join(root, 'cli-bad'), '--size', '40'], { encoding: 'utf8' });
  expect(damaged.status).toBe(2);
  expect(damaged.stderr).toMatch(/^error: Cannot decode ISIC_1007 from [^\n]*\n$/);
  const quality = spawnSync(process.execPath, [...args.slice(0, 4), '--out', path.join(root, 'q'), '--quality', '101'], { encoding: 'utf8' });
  expect(quality.status).toBe(2);
  expect(quality.stderr).toContain("expected an integer between 1 and 100 for --quality but received '101'");
});

test('an aborted conversion (Ctrl-C) stops and removes its partial folder; one left by a killed process is removed by the next run', async () => {
  const source = await jpegSet(path.join(root, 'interrupt-src'));
  const out = path.join(root, 'interrupted');
  const controller = new AbortController();
  let converted = 0;
  const err = await convertDataset({
    data: source,
    out,
    size: 32,
    files: 2,
    workers: 1,
    signal: controller.signal,
    onProgress: () => ++converted === 2 && controller.abort(),
  }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConvertInterruptedError);
  expect((err as Error).message).toBe(`the conversion into ${out} was interrupted: nothing was written (the partial folder was removed); run it again to convert`);
  expect(converted).toBe(2);
  expect(readdirSync(root).filter((n) => n.startsWith('interrupted'))).toEqual([]);
  // A SIGKILLed run leaves out.PID.partial behind; the next run clears it (its process is gone).
  const abandoned = `${out}.2147483646.partial`;
  mkdirSync(abandoned);
  writeFileSync(path.join(abandoned, 'train00-3.tfrec'), 'half');
  const lines: string[] = [];
  await convertDataset({ data: source, out, size: 32, files: 2, log: (l) => lines.push(l) });
  expect(existsSync(abandoned)).toBe(false);
  expect(lines).toContain(`removed ${abandoned}, left by an interrupted conversion (process 2147483646 is gone)`);
  expect(readdirSync(root).filter((n) => n.startsWith('interrupted'))).toEqual(['interrupted']);
});
