/** Small file helpers shared by everything that writes what a user keeps (checkpoints, CSVs). */
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import { promises as fsp } from 'fs';
import * as path from 'path';

/** Refusal to replace something the user made (a results file, a checkpoint, an output folder): nothing was written. */
export class OutputExistsError extends Error {
  override name = 'OutputExistsError';
  readonly code = 'EEXIST';
}

/** A folder for output (--out, --runs-dir, the cache) that cannot be made where the user asked: nothing was written. */
export class OutputLocationError extends Error {
  override name = 'OutputLocationError';
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/**
 * Before any work, so a refusal costs nothing: refuses when `file` exists. `instead` says what to
 * do (e.g. "choose another --out or move that file away").
 */
export function refuseExistingFile(file: string, instead: string): void {
  if (fs.existsSync(file)) throw new OutputExistsError(`${file} already exists and was left untouched: ${instead}`);
}

/**
 * Writes a new file atomically (writeFileAtomic without overwrite), after refuseExistingFile
 * passed: a file of that name created meanwhile is refused in the same words, left as it was.
 */
export async function writeNewFile(file: string, data: Buffer | readonly Buffer[], instead: string): Promise<void> {
  try {
    await writeFileAtomic(file, data);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new OutputExistsError(`${file} appeared meanwhile and was left untouched: ${instead}`);
    throw e;
  }
}

/**
 * Writes atomically: a temporary file in the same folder, fsync, then rename, so a crash never
 * leaves a half-written file under the final name. Refuses to replace an existing file unless
 * `overwrite` is set (an OutputExistsError, code EEXIST), and never replaces a folder. Without
 * `overwrite` the file is published with link(2), which fails if the name exists, so a file
 * another writer created meanwhile is not replaced either; on a file system without hard links
 * it falls back to rename after the existence check, where that race remains.
 */
export async function writeFileAtomic(file: string, data: Buffer | readonly Buffer[], { overwrite = false } = {}): Promise<void> {
  const exists = () => new OutputExistsError(`${file} already exists and was left untouched: choose another path or pass overwrite`);
  // Checked first too, so a refusal costs no write.
  const found = await fsp.stat(file).catch(() => null);
  if (found?.isDirectory()) throw new OutputExistsError(`${file} is a folder, which was left untouched: give the path of a file to write`);
  if (found && !overwrite) throw exists();
  await makeDirectory(path.dirname(file));
  // Unique per call: two writes of one name in the same millisecond must not share a temporary.
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const removeTemporary = () => fsp.rm(temporary, { force: true }).catch(() => undefined);
  const handle = await fsp.open(temporary, 'w');
  try {
    try {
      // Parts are written in order, so the caller need not concatenate a large file in memory.
      for (const part of Buffer.isBuffer(data) ? [data] : data) await handle.writeFile(part);
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    await removeTemporary(); // e.g. a full disk: leave no half-written file
    throw err;
  }
  try {
    if (overwrite || !(await publishWithoutReplacing(temporary, file))) await fsp.rename(temporary, file);
  } catch (err) {
    throw (err as NodeJS.ErrnoException).code === 'EEXIST' ? exists() : err;
  } finally {
    await removeTemporary(); // after link: the second name; after rename: already gone
  }
}

/**
 * Links `temporary` under `file`, atomically failing with EEXIST when `file` exists. Returns
 * false where the file system has no hard links (some network and FAT mounts): the caller then
 * renames, after the existence check it already made.
 */
async function publishWithoutReplacing(temporary: string, file: string): Promise<boolean> {
  try {
    await fsp.link(temporary, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'ENOSYS') return false;
    throw err;
  }
}

/**
 * `mkdir -p`: creates `dir` and any missing parents; an existing folder is fine. Node 20's own
 * `mkdir(dir, { recursive: true })` never returns where the kernel answers ENOENT for a folder
 * that cannot be made under an existing parent (e.g. anything under /proc), so this walks up to
 * the first existing ancestor and creates each missing level itself: a folder that cannot be
 * made is refused at once, with its name and the reason.
 */
export async function makeDirectory(dir: string): Promise<void> {
  const missing: string[] = [];
  for (let probe = path.resolve(dir); ; probe = path.dirname(probe)) {
    const found = await fsp.stat(probe).catch((err: NodeJS.ErrnoException) => {
      // ENOTDIR: a file further up, which the walk reaches and names.
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return null;
      throw cannotCreate(dir, probe, err);
    });
    if (found) {
      if (!found.isDirectory()) throw cannotCreate(dir, probe, Object.assign(new Error('it is a file, not a folder'), { code: 'ENOTDIR' }));
      break;
    }
    missing.push(probe);
    if (path.dirname(probe) === probe) break; // a missing root: mkdir below says why
  }
  for (const level of missing.reverse()) {
    try {
      await fsp.mkdir(level);
    } catch (err) {
      // Another process may have made it meanwhile; anything else is final.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && (await fsp.stat(level)).isDirectory()) continue;
      throw cannotCreate(dir, level, err as NodeJS.ErrnoException);
    }
  }
}

/**
 * Refuses, before any long work starts, an output folder in which no new folder can be made
 * (`--runs-dir` on a read-only or foreign disk): it makes `dir` as makeDirectory would and one
 * folder inside it, which it removes again. `dir` itself is kept, even if empty: parallel runs
 * (one per fold) share it, and removing it could pull it from under another run.
 */
export async function checkFolderWritable(dir: string): Promise<void> {
  await makeDirectory(dir);
  let probe: string;
  try {
    probe = await fsp.mkdtemp(path.join(dir, '.write-check-'));
  } catch (err) {
    const cause = err as NodeJS.ErrnoException;
    throw new OutputLocationError(`cannot create folders in ${dir}: ${whyNoFolder(cause)}; choose a writable location`, cause.code);
  }
  await fsp.rmdir(probe);
}

/** A file a command will write, with the option that names it (for messages). */
export interface PlannedOutput {
  file: string;
  option: string;
}

/**
 * Before any work, for a command that writes several files: refuses two outputs on one path, and
 * makes (and keeps) each one's folder, refusing one where nothing can be written. Whether a file
 * exists already is each command's own check (some replace theirs when asked).
 */
export async function checkOutputLocations(outputs: readonly PlannedOutput[]): Promise<void> {
  const byPath = new Map<string, PlannedOutput>();
  for (const output of outputs) {
    const twin = byPath.get(path.resolve(output.file));
    if (twin) throw new OutputLocationError(`${twin.option} and ${output.option} are both ${output.file}: give each output a file of its own`, 'EEXIST');
    byPath.set(path.resolve(output.file), output);
  }
  for (const output of outputs) await checkFolderWritable(path.dirname(path.resolve(output.file)));
}

/**
 * Writes several new files as one result, each with writeNewFile: when one fails, the ones this
 * call wrote are removed again, so a rerun is not refused over half a result. Resolves with the
 * paths written.
 */
export async function writeNewFiles(files: readonly { file: string; data: Buffer }[], instead: string): Promise<string[]> {
  const written: string[] = [];
  try {
    for (const { file, data } of files) {
      await writeNewFile(file, data, instead);
      written.push(file);
    }
  } catch (err) {
    await Promise.all(written.map((file) => fsp.rm(file, { force: true })));
    throw err;
  }
  return written;
}

function cannotCreate(dir: string, level: string, cause: NodeJS.ErrnoException): OutputLocationError {
  const where = level === path.resolve(dir) ? '' : ` (needed for ${dir})`;
  return new OutputLocationError(`cannot create the folder ${level}${where}: ${whyNoFolder(cause)}; choose a writable location`, cause.code);
}

/** Why mkdir failed, in words (ENOENT under an existing parent: a file system such as /proc). */
function whyNoFolder(cause: NodeJS.ErrnoException): string {
  const reasons: Record<string, string> = {
    ENOENT: 'this file system does not allow new folders there',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'the file system is read-only',
    ENOSPC: 'the disk is full',
  };
  return (cause.code && reasons[cause.code]) || cause.message;
}

/**
 * A new, empty `${out}.PID.partial` folder to build `out` in (a conversion, the demo set), which
 * the caller renames to `out` once complete, so an interrupted build never looks finished. The
 * partial folders of processes that are gone are removed first; `leftBy` names that work.
 */
export async function makeStagingFolder(out: string, leftBy: string, log: (line: string) => void): Promise<string> {
  // Its parent first: a file in the way is named, not met as ENOTDIR in what follows.
  await makeDirectory(path.dirname(path.resolve(out)));
  await removeAbandonedStaging(out, leftBy, log);
  const staging = `${out}.${process.pid}.partial`;
  await fsp.rm(staging, { recursive: true, force: true });
  await makeDirectory(staging);
  return staging;
}

/**
 * Removes `${out}.PID.partial` folders whose process is gone. Output built under a temporary
 * name (a conversion, the demo set) leaves one when its process is killed before its clean-up
 * (SIGKILL, a lost machine), and it would otherwise stay forever.
 */
async function removeAbandonedStaging(out: string, leftBy: string, log: (line: string) => void): Promise<void> {
  const parent = path.dirname(path.resolve(out));
  const prefix = `${path.basename(out)}.`;
  for (const name of await fsp.readdir(parent).catch(() => [] as string[])) {
    const pid = name.startsWith(prefix) && name.endsWith('.partial') ? Number(name.slice(prefix.length, -'.partial'.length)) : NaN;
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processIsAlive(pid)) continue;
    await fsp.rm(path.join(parent, name), { recursive: true, force: true });
    log(`removed ${path.join(parent, name)}, left by ${leftBy} (process ${pid} is gone)`);
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/** One CSV field, quoted when it holds a comma, quote or line break (RFC 4180). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
