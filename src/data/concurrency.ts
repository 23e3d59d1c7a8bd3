/** Image work over many images at once (sharp decodes on libuv's pool), with progress. */
import { performance } from 'perf_hooks';

/** How far a long pass over the images got (convert, inspect --sample-images all). */
export interface ImageProgress {
  done: number;
  total: number;
  imagesPerSecond: number;
  etaSeconds: number;
}

/**
 * Runs `task(i)` for i = 0 .. count-1, at most `workers` at once, starting them in index order.
 * After the first rejection no new task starts; the call settles once every started task has,
 * and then rejects with that first error, so nothing is still running when the caller cleans up.
 */
export async function forEachConcurrently(count: number, workers: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (next < count && !failed) {
      const index = next++;
      try {
        await task(index);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(workers, count)) }, worker));
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}

/** A counter of finished images that reports each one, with the rate since it was made and the time left. */
export function progressCounter(total: number, onProgress: ((progress: ImageProgress) => void) | undefined): () => void {
  const started = performance.now();
  let done = 0;
  return () => {
    done++;
    if (!onProgress) return;
    const imagesPerSecond = done / Math.max((performance.now() - started) / 1000, 1e-9);
    onProgress({ done, total, imagesPerSecond, etaSeconds: (total - done) / imagesPerSecond });
  };
}
