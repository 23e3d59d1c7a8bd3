/** forEachConcurrently: the pool that convert and inspect run their image work in. */
import { forEachConcurrently, progressCounter } from '../../src/data/concurrency';

const tick = () => new Promise((resolve) => setImmediate(resolve));

test('runs every index once, never more than `workers` at a time, starting in index order', async () => {
  let running = 0;
  let most = 0;
  const started: number[] = [];
  await forEachConcurrently(25, 3, async (i) => {
    started.push(i);
    most = Math.max(most, ++running);
    for (let k = 0; k < (i % 4) + 1; k++) await tick();
    running--;
  });
  expect(started).toEqual(Array.from({ length: 25 }, (_, i) => i));
  expect(most).toBe(3);
});

test('after a failure no task starts, those running finish, then the first error comes back', async () => {
  const started: number[] = [];
  const finished: number[] = [];
  const run = forEachConcurrently(100, 4, async (i) => {
    started.push(i);
    await tick();
    if (i === 5) throw new Error('image 5 is damaged');
    await tick();
    await tick();
    finished.push(i);
  });
  await expect(run).rejects.toThrow('image 5 is damaged');
  expect(started.length).toBeLessThan(12);
  // Every task that started (but 5) ran to its end before the call settled.
  expect(finished.sort((a, b) => a - b)).toEqual(started.filter((i) => i !== 5).sort((a, b) => a - b));
});

test('no items is fine; the progress counter reports done, total and a finite eta', async () => {
  await forEachConcurrently(0, 4, async () => {
    throw new Error('never called');
  });
  const reports: { done: number; total: number; etaSeconds: number }[] = [];
  const finishedOne = progressCounter(3, (p) => reports.push(p));
  for (let i = 0; i < 3; i++) finishedOne();
  expect(reports.map((r) => [r.done, r.total])).toEqual([[1, 3], [2, 3], [3, 3]]);
  expect(reports.every((r) => Number.isFinite(r.etaSeconds) && r.etaSeconds >= 0)).toBe(true);
  expect(reports[2].etaSeconds).toBe(0);
});
