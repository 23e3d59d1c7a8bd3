/**
 * Sizes libuv's thread pool before anything uses it. sharp decodes on that pool, which has 4
 * threads unless UV_THREADPOOL_SIZE says otherwise, so on a 16-core GPU machine at most 4 JPEG
 * decodes would run at once however many `--workers` asked for. libuv reads the variable when the
 * pool first starts, so this module must be imported before any other (cli.ts and index.ts import
 * it first). A value the user set is kept.
 */
import * as os from 'os';

/** The pool size used when UV_THREADPOOL_SIZE is unset: one thread per core, at least libuv's 4. */
export function defaultThreadpoolSize(cores = os.availableParallelism()): number {
  return Math.min(1024, Math.max(4, cores));
}

if (!process.env.UV_THREADPOOL_SIZE) process.env.UV_THREADPOOL_SIZE = String(defaultThreadpoolSize());
