/**
 * The built-in demo set: a folder is reused only for the set it holds, a folder that holds
 * something else is refused and left as it was, and bad options are refused before any writing.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { demoCacheDir, ensureDemoDataset } from '../../src/data/demo';
import { OutputLocationError } from '../../src/files';

const root = mkdtempSync(path.join(os.tmpdir(), 'melanoma-demo-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const SMALL = { images: 4, files: 1, size: 32 };

/** Every file of `dir` with its bytes, to show a refusal changed nothing. */
function contents(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).map((name) => [name, readFileSync(path.join(dir, name)).toString('base64')]));
}

test('the same options reuse the set; other options on its folder are refused, naming each difference, and the set is kept', async () => {
  const dir = path.join(root, 'reused');
  const lines: string[] = [];
  expect(await ensureDemoDataset({ dir, ...SMALL }, (l) => lines.push(l))).toBe(dir);
  expect(lines).toHaveLength(1); // generated once
  const before = contents(dir);
  const record = path.join(dir, 'train00-4.tfrec');
  const written = statSync(record).mtimeMs;
  expect(await ensureDemoDataset({ dir, ...SMALL }, (l) => lines.push(l))).toBe(dir);
  expect(lines).toHaveLength(1); // not generated again
  expect(statSync(record).mtimeMs).toBe(written);

  const other = ensureDemoDataset({ dir, ...SMALL, images: 6, seed: 9 });
  await expect(other).rejects.toThrow(
    new OutputLocationError(
      `${dir} holds another demo set than the one asked for: it was made with images 4 where 6 was asked for, seed 2020 where 9 was asked for. Pass another dir, or remove ${dir} to have it generated again`,
      'EEXIST',
    ),
  );
  expect(contents(dir)).toEqual(before);
});

test('a set from another generator version is refused too', async () => {
  const dir = path.join(root, 'old-version');
  await ensureDemoDataset({ dir, ...SMALL });
  const manifest = path.join(dir, 'manifest.json');
  writeFileSync(manifest, JSON.stringify({ ...JSON.parse(readFileSync(manifest, 'utf8')), version: 'demo-v0' }));
  await expect(ensureDemoDataset({ dir, ...SMALL })).rejects.toThrow(`${dir} holds another demo set than the one asked for: it was made by demo generator "demo-v0", not demo-v1.`);
});

test('a folder that is not a demo set is refused, and its files kept', async () => {
  const dir = path.join(root, 'my-images');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'ISIC_0000001.jpg'), 'mine');
  await expect(ensureDemoDataset({ dir, ...SMALL })).rejects.toThrow(
    new OutputLocationError(`${dir} exists and is not a demo set (no manifest.json; it holds 1 entry): pass another dir, one that does not exist yet`, 'EEXIST'),
  );
  expect(contents(dir)).toEqual({ 'ISIC_0000001.jpg': Buffer.from('mine').toString('base64') });
  expect(readdirSync(root).filter((name) => name.startsWith('my-images'))).toEqual(['my-images']); // no staging folder left
});

test('a dir that is a file, or lies under one, is refused in words, before any image is made; the file is kept', async () => {
  const file = path.join(root, 'a-file');
  writeFileSync(file, 'mine');
  await expect(ensureDemoDataset({ dir: file, ...SMALL })).rejects.toThrow(new OutputLocationError(`${file} is a file, not a folder, and was left untouched: pass another dir for the demo set`, 'ENOTDIR'));
  await expect(ensureDemoDataset({ dir: path.join(file, 'demo'), ...SMALL })).rejects.toThrow(`cannot create the folder ${file}: it is a file, not a folder; choose a writable location`);
  expect(readFileSync(file, 'utf8')).toBe('mine');
  expect(readdirSync(root).filter((name) => name.startsWith('a-file'))).toEqual(['a-file']);
});

test('in the cache, a set made with other options gets its own folder, named by how it differs', async () => {
  const saved = process.env.MELANOMA_CACHE;
  process.env.MELANOMA_CACHE = path.join(root, 'cache');
  try {
    expect(demoCacheDir()).toBe(path.join(root, 'cache', 'demo-v1'));
    expect(demoCacheDir({ images: 480, size: 96 })).toBe(path.join(root, 'cache', 'demo-v1')); // the defaults spelt out
    const small = await ensureDemoDataset(SMALL);
    expect(small).toBe(path.join(root, 'cache', 'demo-v1_images-4_files-1_size-32'));
    const seeded = await ensureDemoDataset({ ...SMALL, seed: 3 });
    expect(seeded).toBe(path.join(root, 'cache', 'demo-v1_images-4_files-1_size-32_seed-3'));
    expect(readFileSync(path.join(small, 'train00-4.tfrec')).equals(readFileSync(path.join(seeded, 'train00-4.tfrec')))).toBe(false);
  } finally {
    if (saved === undefined) delete process.env.MELANOMA_CACHE;
    else process.env.MELANOMA_CACHE = saved;
  }
});

test.each([
  [{ image: 4 }, TypeError, "Unknown option 'image': did you mean 'images'? (options: dir, images, files, positiveFraction, size, seed)"],
  [{ images: 4, files: 5 }, RangeError, 'Expected integer between 1 and 4 for files but received 5 of type number'],
  [{ images: 1.5 }, RangeError, `Expected integer between 2 and ${Number.MAX_SAFE_INTEGER} for images but received 1.5 of type number`],
  [{ positiveFraction: 2 }, RangeError, 'Expected number in [0, 1] for positiveFraction but received 2 of type number'],
  [{ size: '96' }, TypeError, "Expected integer between 32 and 4096 for size but received '96' of type string"],
])('bad option %j is refused before anything is written', async (options, kind, message) => {
  const dir = path.join(root, 'bad-option');
  const err = await ensureDemoDataset({ dir, ...(options as object) }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(kind);
  expect((err as Error).message).toBe(message);
  expect(readdirSync(root).filter((name) => name.startsWith('bad-option'))).toEqual([]);
});
