/** writeFileAtomic never replaces a file it was not asked to, even one created while it writes. */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkFolderWritable, makeDirectory, OutputExistsError, OutputLocationError, refuseExistingFile, writeFileAtomic, writeNewFile, writeNewFiles } from '../src/files';

const dir = mkdtempSync(path.join(os.tmpdir(), 'melanoma-files-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writeFileAtomic', () => {
  test('two writers racing for one new name: exactly one wins, whole, and the other is told', async () => {
    const file = path.join(dir, 'race.safetensors');
    const payloads = [Buffer.alloc(1 << 20, 1), Buffer.alloc(1 << 20, 2)];
    const outcomes = await Promise.allSettled(payloads.map((data) => writeFileAtomic(file, data)));
    const won = outcomes.findIndex((o) => o.status === 'fulfilled');
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    expect(readFileSync(file).equals(payloads[won])).toBe(true);
    const lost = outcomes[1 - won] as PromiseRejectedResult;
    expect(String(lost.reason.message)).toMatch(/race\.safetensors already exists and was left untouched/);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  test('an existing file is left as it was; overwrite replaces it', async () => {
    const file = path.join(dir, 'kept.csv');
    writeFileSync(file, 'mine');
    // One class for every refusal to replace a user's file, as index.ts promises (a checkpoint too).
    await expect(writeFileAtomic(file, Buffer.from('theirs'))).rejects.toThrow(new OutputExistsError(`${file} already exists and was left untouched: choose another path or pass overwrite`));
    await expect(writeFileAtomic(file, Buffer.from('theirs'))).rejects.toBeInstanceOf(OutputExistsError);
    expect(readFileSync(file, 'utf8')).toBe('mine');
    const folder = path.join(dir, 'a-folder');
    mkdirSync(folder);
    writeFileSync(path.join(folder, 'inside.txt'), 'kept');
    for (const overwrite of [false, true])
      await expect(writeFileAtomic(folder, Buffer.from('x'), { overwrite })).rejects.toThrow(new OutputExistsError(`${folder} is a folder, which was left untouched: give the path of a file to write`));
    expect(readFileSync(path.join(folder, 'inside.txt'), 'utf8')).toBe('kept');
    await writeFileAtomic(file, Buffer.from('new'), { overwrite: true });
    expect(readFileSync(file, 'utf8')).toBe('new');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

test('parts are written in order as one file, without being concatenated first', async () => {
  const file = path.join(dir, 'parts.bin');
  const parts = [Buffer.from('head'), Buffer.alloc(0), Buffer.alloc(300_000, 7), Buffer.from('tail')];
  await writeFileAtomic(file, parts);
  expect(readFileSync(file).equals(Buffer.concat(parts))).toBe(true);
});

describe('refuseExistingFile and writeNewFile (the refusals of compare --json, ensemble --out and calibrate)', () => {
  const instead = 'choose another --out or move that file away';

  test('a file that exists is refused before any work, in words that name it and the fix', () => {
    const file = path.join(dir, 'results.json');
    writeFileSync(file, 'mine');
    expect(() => refuseExistingFile(file, instead)).toThrow(new OutputExistsError(`${file} already exists and was left untouched: ${instead}`));
    expect(() => refuseExistingFile(path.join(dir, 'absent.json'), instead)).not.toThrow();
  });

  test('a file created between the check and the write is refused as having appeared, and kept', async () => {
    const file = path.join(dir, 'late.csv');
    refuseExistingFile(file, instead); // passes: nothing there yet
    writeFileSync(file, 'theirs'); // another writer, meanwhile
    const refusal = await writeNewFile(file, Buffer.from('ours'), instead).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(OutputExistsError);
    expect((refusal as Error).message).toBe(`${file} appeared meanwhile and was left untouched: ${instead}`);
    expect(readFileSync(file, 'utf8')).toBe('theirs');
    await writeNewFile(path.join(dir, 'fresh.csv'), Buffer.from('ours'), instead);
    expect(readFileSync(path.join(dir, 'fresh.csv'), 'utf8')).toBe('ours');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('writeNewFiles (one result in several files)', () => {
  test('when a later file fails, the ones written before it are removed again; a file that was there stays', async () => {
    const first = path.join(dir, 'result-a.csv');
    const blocker = path.join(dir, 'result-blocker');
    writeFileSync(blocker, 'a file where a folder is needed');
    const second = path.join(blocker, 'result-b.csv');
    await expect(writeNewFiles([{ file: first, data: Buffer.from('a') }, { file: second, data: Buffer.from('b') }], 'choose another path')).rejects.toThrow(OutputLocationError);
    expect(existsSync(first)).toBe(false);
    expect(readFileSync(blocker, 'utf8')).toBe('a file where a folder is needed');
    // One that exists already is refused and kept, and nothing else is left written.
    writeFileSync(path.join(dir, 'result-kept.csv'), 'mine');
    await expect(writeNewFiles([{ file: first, data: Buffer.from('a') }, { file: path.join(dir, 'result-kept.csv'), data: Buffer.from('b') }], 'choose another path')).rejects.toThrow(OutputExistsError);
    expect(existsSync(first)).toBe(false);
    expect(readFileSync(path.join(dir, 'result-kept.csv'), 'utf8')).toBe('mine');
    expect(await writeNewFiles([{ file: first, data: Buffer.from('a') }], 'choose another path')).toEqual([first]);
    expect(readFileSync(first, 'utf8')).toBe('a');
  });
});

describe('makeDirectory', () => {
  test('creates every missing level; an existing folder is fine, and so is a concurrent creator', async () => {
    const deep = path.join(dir, 'made', 'a', 'b');
    await Promise.all([makeDirectory(deep), makeDirectory(deep), makeDirectory(path.join(dir, 'made', 'a'))]);
    expect(statSync(deep).isDirectory()).toBe(true);
    await makeDirectory(deep);
    await makeDirectory(path.relative(process.cwd(), deep));
  });

  test('a file in the way is named, and left as it was', async () => {
    const file = path.join(dir, 'in-the-way.txt');
    writeFileSync(file, 'mine');
    const runs = path.join(file, 'runs', 'x');
    await expect(makeDirectory(runs)).rejects.toThrow(`cannot create the folder ${file} (needed for ${runs}): it is a file, not a folder; choose a writable location`);
    expect(readFileSync(file, 'utf8')).toBe('mine');
  });

  // Node 20's fs.mkdir(dir, { recursive: true }) never settles here: the kernel answers ENOENT.
  (existsSync('/proc/self') ? test : test.skip)('a folder the file system cannot hold (under /proc) is refused at once, with the reason', async () => {
    await expect(makeDirectory('/proc/melanoma-runs/x')).rejects.toThrow(
      'cannot create the folder /proc/melanoma-runs (needed for /proc/melanoma-runs/x): this file system does not allow new folders there; choose a writable location',
    );
  });
});

describe('checkFolderWritable (a --runs-dir checked before any data are opened)', () => {
  test('a folder that can be made passes; its probe is removed, the folder is kept for the run (and parallel ones)', async () => {
    const runs = path.join(dir, 'checked', 'runs');
    await Promise.all([checkFolderWritable(runs), checkFolderWritable(runs), checkFolderWritable(runs)]);
    expect(readdirSync(runs)).toEqual([]);
    const existing = path.join(dir, 'existing-runs');
    await makeDirectory(existing);
    await checkFolderWritable(existing);
    expect(readdirSync(existing)).toEqual([]);
  });

  (existsSync('/proc/self') ? test : test.skip)('an existing folder that cannot hold new folders is refused, with the reason', async () => {
    await expect(checkFolderWritable('/proc/self')).rejects.toThrow(
      new OutputLocationError('cannot create folders in /proc/self: this file system does not allow new folders there; choose a writable location', 'ENOENT'),
    );
  });
});

// The demo set lives in the user's cache: when that cannot be made, the error says how to move it.
(existsSync('/proc/self') ? test : test.skip)('an unwritable demo cache names MELANOMA_CACHE', async () => {
  const { ensureDemoDataset } = await import('../src/data/demo');
  const saved = process.env.MELANOMA_CACHE;
  process.env.MELANOMA_CACHE = '/proc/melanoma-cache';
  try {
    await expect(ensureDemoDataset({ images: 4, files: 1 })).rejects.toThrow(
      /^cannot create the folder \/proc\/melanoma-cache: .* \(the demo set is kept under \/proc\/melanoma-cache: set MELANOMA_CACHE to a writable folder to keep it elsewhere\)$/,
    );
  } finally {
    if (saved === undefined) delete process.env.MELANOMA_CACHE;
    else process.env.MELANOMA_CACHE = saved;
  }
});

// Killed while generating (SIGKILL), a run leaves DIR.PID.partial; the next one clears it, as convert does.
test('a partial demo folder left by a process that is gone is removed by the next generation', async () => {
  const { ensureDemoDataset } = await import('../src/data/demo');
  const demo = path.join(dir, 'demo');
  const abandoned = `${demo}.2147483646.partial`;
  mkdirSync(abandoned);
  writeFileSync(path.join(abandoned, 'train00-2.tfrec'), 'half');
  const lines: string[] = [];
  await ensureDemoDataset({ dir: demo, images: 4, files: 1, size: 32 }, (line) => lines.push(line));
  expect(existsSync(abandoned)).toBe(false);
  expect(lines).toContain(`removed ${abandoned}, left by an interrupted generation of the demo set (process 2147483646 is gone)`);
  expect(readdirSync(dir).filter((n) => n.startsWith('demo'))).toEqual(['demo']);
});
