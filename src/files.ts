/** Small file helpers shared by everything that writes what a user keeps (checkpoints, CSVs). */
import { promises as fsp } from 'fs';
import * as path from 'path';

/**
 * Writes atomically: a temporary file in the same folder, fsync, then rename, so a crash never
 * leaves a half-written file under the final name. Refuses to replace an existing file unless
 * `overwrite` is set.
 */
export async function writeFileAtomic(file: string, data: Buffer, { overwrite = false } = {}): Promise<void> {
  if (!overwrite && (await fsp.stat(file).catch(() => null)))
    throw new Error(`${file} already exists and was left untouched: choose another path or pass overwrite`);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  const handle = await fsp.open(temporary, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await fsp.rm(temporary, { force: true }); // e.g. a full disk: leave no half-written file
    throw err;
  }
  await handle.close();
  try {
    await fsp.rename(temporary, file);
  } catch (err) {
    await fsp.rm(temporary, { force: true });
    throw err;
  }
}

/** One CSV field, quoted when it holds a comma, quote or line break (RFC 4180). */
export function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
