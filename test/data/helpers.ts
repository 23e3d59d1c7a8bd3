/** Shared test helpers: where the real data lives, temporary folders. */
import { existsSync, mkdtempSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DataError } from '../../src/data/errors';

/** ../shared/data/uda1-dev beside the checkout (absent in a user's fresh clone); UDA1_DIR overrides. */
export const UDA1 = process.env.UDA1_DIR ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'data', 'uda1-dev');
export const HAVE_UDA1 = existsSync(path.join(UDA1, 'train00-60.tfrec'));
export const UDA1_FILES = [0, 1, 2, 3, 4].map((i) => path.join(UDA1, `train0${i}-60.tfrec`));

/** describe() over the real data set, skipped with the reason in its name when it is absent. */
export const describeWithUda1: jest.Describe = HAVE_UDA1
  ? describe
  : (((name: string, fn: () => void) => {
      const why = `real test data not found at ${UDA1} (it lives in ../shared/data/uda1-dev beside the checkout; UDA1_DIR overrides)`;
      console.warn(`Skipping "${name}": ${why}`);
      describe.skip(`${name} [SKIPPED: ${why}]`, fn);
    }) as jest.Describe);

/** A fresh temporary folder, removed after the test file. */
export function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'melanoma-data-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `fn` and returns the DataError it throws (fails the test otherwise). */
export async function dataError(fn: () => Promise<unknown> | unknown): Promise<DataError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DataError);
    return err as DataError;
  }
  throw new Error('expected a DataError, but nothing was thrown');
}
