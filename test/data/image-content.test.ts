/**
 * assessImageContent: an image that decodes but holds no picture (one colour, or one line of
 * pixels stretched over the frame) is told apart from real and synthetic lesions, letterboxed
 * ones included. On uda1-dev it must find exactly the 150 streaked images seen there by eye.
 */
import { readdirSync, readFileSync } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { SAME_PICTURE_DISTANCE, assessImageContent, degenerateWarning, describeContentDefect, findSamePictures, sampleDegenerateImages } from '../../src/data/image-content';
import { inspectDataset } from '../../src/data/inspect';
import { openDataset } from '../../src/data/isic';
import { openRunData } from '../../src/train/run';
import { renderLesion } from '../../src/data/demo';
import { mulberry32 } from '../../src/data/random';
import { UDA1, describeWithUda1 } from './helpers';

const SIZE = 96;
const jpeg = (pixels: Buffer, width = SIZE, height = SIZE) => sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();

/** Every row of `pixels` replaced by its middle row (a line stretched down the frame), plus faint noise. */
function streakRows(pixels: Buffer, random: () => number): Buffer {
  const out = Buffer.alloc(pixels.length);
  const row = pixels.subarray((SIZE / 2) * SIZE * 3, (SIZE / 2 + 1) * SIZE * 3);
  for (let y = 0; y < SIZE; y++) for (let i = 0; i < row.length; i++) out[y * row.length + i] = Math.max(0, Math.min(255, row[i] + Math.round((random() - 0.5) * 2)));
  return out;
}

function transpose(pixels: Buffer): Buffer {
  const out = Buffer.alloc(pixels.length);
  for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) for (let c = 0; c < 3; c++) out[(x * SIZE + y) * 3 + c] = pixels[(y * SIZE + x) * 3 + c];
  return out;
}

test('synthetic lesions pass; the same lesion streaked down or across, or one colour, does not', async () => {
  const random = mulberry32(7);
  for (let i = 0; i < 6; i++) {
    const lesion = renderLesion(SIZE, i % 2 === 1, random);
    const real = await assessImageContent(await jpeg(lesion));
    expect(real).toMatchObject({ defect: null, streakAlong: null });
    expect(real.anisotropy).toBeLessThan(2);

    const down = await assessImageContent(await jpeg(streakRows(lesion, random)));
    expect(down).toMatchObject({ defect: 'streaked', streakAlong: 'rows' });
    const across = await assessImageContent(await jpeg(transpose(streakRows(lesion, random))));
    expect(across).toMatchObject({ defect: 'streaked', streakAlong: 'columns' });
    expect(describeContentDefect(across)).toMatch(/^streaked: every column (the same|nearly the same \(\d+\.\dx more structure down than across\))$/);
  }
  const blank = await assessImageContent(await sharp({ create: { width: 300, height: 200, channels: 3, background: '#b08070' } }).jpeg().toBuffer());
  expect(blank).toMatchObject({ defect: 'blank', streakAlong: null });
  expect(describeContentDefect(blank)).toBe('blank: one colour (grey-level deviation 0.0)');
  await expect(assessImageContent(Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]))).rejects.toThrow();
});

test('EXIF orientation is applied first, as the loader applies it: rows streaked on disk are columns on screen', async () => {
  const random = mulberry32(11);
  const streaked = streakRows(renderLesion(SIZE, false, random), random);
  const upright = await assessImageContent(await jpeg(streaked));
  const rotated = await assessImageContent(await sharp(streaked, { raw: { width: SIZE, height: SIZE, channels: 3 } }).withMetadata({ orientation: 6 }).jpeg().toBuffer());
  expect([upright.streakAlong, rotated.streakAlong]).toEqual(['rows', 'columns']);
  // Non-JPEG bytes get the loader's own refusal, naming the image.
  const png = await sharp(streaked, { raw: { width: SIZE, height: SIZE, channels: 3 } }).png().toBuffer();
  await expect(assessImageContent(png, 'ISIC_X')).rejects.toMatchObject({ code: 'ERR_IMAGE_FORMAT', message: expect.stringContaining('ISIC_X') });
});

test('black bars above and below a lesion (letterboxing) are not streaks', async () => {
  const lesion = renderLesion(SIZE, true, mulberry32(3));
  const boxed = Buffer.from(lesion);
  boxed.fill(0, 0, 16 * SIZE * 3);
  boxed.fill(0, (SIZE - 16) * SIZE * 3);
  const a = await assessImageContent(await jpeg(boxed));
  expect(a.defect).toBeNull();
});

describeWithUda1('on the 300 real images of uda1-dev', () => {
  // Seen by eye (contact sheets of the JPEGs): ISIC_0000000-0000149 are streaks with no lesion
  // (0-100 and 113 exact copies of one row; the rest with some noise down the frame);
  // ISIC_0000150-0000299 are dermoscopic lesions, some letterboxed or inside a dermoscope's circle.
  it('flags exactly the 150 streaked images, all as rows nearly the same', async () => {
    const dir = path.join(UDA1, 'jpeg');
    const names = readdirSync(dir).filter((f) => f.endsWith('.jpg')).sort();
    expect(names).toHaveLength(300);
    const flagged: number[] = [];
    let mostAnisotropicLesion = 0;
    for (const name of names) {
      const a = await assessImageContent(readFileSync(path.join(dir, name)));
      const index = Number(name.slice('ISIC_'.length, -'.jpg'.length));
      if (a.defect) {
        expect(a).toMatchObject({ defect: 'streaked', streakAlong: 'rows' });
        flagged.push(index);
      } else mostAnisotropicLesion = Math.max(mostAnisotropicLesion, a.anisotropy);
    }
    expect(flagged).toEqual(Array.from({ length: 150 }, (_, i) => i));
    // The threshold (2.5) keeps a margin from the real lesions (measured 2.08).
    expect(mostAnisotropicLesion).toBeLessThan(2.3);
  });

  it('finds the same picture twice: identical files, re-encoded and resized copies, and a pair just inside the distance', async () => {
    const dir = path.join(UDA1, 'jpeg');
    const lesions = readdirSync(dir).filter((f) => f.endsWith('.jpg') && Number(f.slice(5, 12)) >= 150).sort();
    const images: { name: string; digest: string; signature: Float32Array }[] = [];
    for (const name of lesions) {
      const bytes = readFileSync(path.join(dir, name));
      images.push({ name, digest: bytes.toString('base64'), signature: (await assessImageContent(bytes)).signature });
    }
    // ISIC_0000279 and ISIC_0000280 are the same file under two names and two patient ids.
    const found = (list: typeof images) => findSamePictures(list).map((p) => [list[p.a].name, list[p.b].name, p.identicalFiles]);
    expect(found(images)).toEqual([['ISIC_0000279.jpg', 'ISIC_0000280.jpg', true]]);

    const copies = [...images];
    const original = readFileSync(path.join(dir, 'ISIC_0000150.jpg'));
    const reencoded = await sharp(original).jpeg({ quality: 60 }).toBuffer();
    const enlarged = await sharp(original).resize(900, 700, { fit: 'fill' }).jpeg({ quality: 85 }).toBuffer();
    copies.push({ name: 'reencoded', digest: 'r', signature: (await assessImageContent(reencoded)).signature });
    copies.push({ name: 'enlarged', digest: 'e', signature: (await assessImageContent(enlarged)).signature });
    // A signature shifted on its top half only: the worst case of the sweep's top-minus-bottom bound.
    const shifted = Float32Array.from(images[10].signature, (v, i) => (i < 128 ? v + 2 * 0.95 * SAME_PICTURE_DISTANCE : v));
    copies.push({ name: 'shifted', digest: 's', signature: shifted });
    const pairs = found(copies);
    expect(pairs).toEqual(
      expect.arrayContaining([
        ['ISIC_0000150.jpg', 'reencoded', false],
        ['ISIC_0000150.jpg', 'enlarged', false],
        ['reencoded', 'enlarged', false],
        [images[10].name, 'shifted', false],
      ]),
    );
    expect(pairs).toHaveLength(5);
  });

  it('train and cv warn from a seeded sample of 20 (openRunData), naming the commands that list and drop them', async () => {
    const { samples } = await openDataset(UDA1);
    const found = await sampleDegenerateImages(samples, { seed: 42 });
    expect(found.checked).toBe(20);
    expect(found.degenerate.length).toBeGreaterThan(0);
    expect(found.degenerate.every((d) => Number(d.imageName.slice(5)) < 150 && /\/train0\d-60\.tfrec record \d+/.test(d.source))).toBe(true);
    expect(await sampleDegenerateImages(samples, { seed: 42 })).toEqual(found); // seeded
    // The same seed checks the same images as inspect --seed 42.
    const inspected = await inspectDataset(UDA1, { seed: 42, folds: 0 });
    expect(inspected.degenerate.map((d) => d.imageName)).toEqual(found.degenerate.map((d) => d.imageName));
    const { contentWarning } = await openRunData(UDA1, undefined, 5, 42, () => undefined);
    expect(contentWarning).toBe(degenerateWarning(found, UDA1));
    expect(contentWarning).toMatch(
      new RegExp(`^warning: ${found.degenerate.length} of 20 sampled images are blank or streaked and show no lesion \\(ISIC_\\d+, ISIC_\\d+, ISIC_\\d+, \\.\\.\\.\\)\\. melanoma inspect \\S+ --sample-images all lists every one; melanoma convert --data \\S+ --out NEW_FOLDER --size SIZE --skip-degenerate leaves them out$`),
    );
    // With a CSV, the commands it names keep the join; cv --resume does not check again.
    const csv = path.join(UDA1, 'train.csv');
    const withCsv = await openRunData(UDA1, csv, 5, 42, () => undefined);
    expect(withCsv.contentWarning).toContain(`melanoma inspect ${UDA1} --csv ${csv} --sample-images all lists every one; melanoma convert --data ${UDA1} --csv ${csv} --out`);
    expect((await openRunData(UDA1, undefined, 5, 42, () => undefined, { checkContent: false })).contentWarning).toBeNull();
    // The 150 lesions alone: nothing to warn of.
    const lesions = samples.filter((s) => Number(s.imageName.slice(5)) >= 150);
    expect(degenerateWarning(await sampleDegenerateImages(lesions, { count: 50 }), UDA1)).toBeNull();
  });
});
