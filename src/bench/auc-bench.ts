/**
 * AUC benchmark: time rocAuc on 10^6 scores (with ties, ~2% positives like ISIC) and print one
 * JSON line. Build with `npx tsc -p tsconfig.json`, run with `node dist/bench/auc-bench.js [n]`.
 */
import { rocAuc } from '../metrics/auc';
import { createRng } from '../metrics/bootstrap';

function main(): void {
  const n = process.argv[2] ? Number(process.argv[2]) : 1_000_000;
  if (!Number.isInteger(n) || n < 2) throw new RangeError(`Expected an integer sample count >= 2 but received ${process.argv[2]}`);
  const rng = createRng(42);
  const labels = new Uint8Array(n);
  const scores = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    labels[i] = rng() < 0.02 ? 1 : 0;
    // Rounded to 1e-4 so ties are common, as with float16/float32 model outputs.
    scores[i] = Math.round((rng() * 0.7 + labels[i] * 0.3) * 1e4) / 1e4;
  }
  labels[0] = 1;
  labels[1] = 0;
  // The first call includes JIT warm-up: what a one-off CLI evaluation pays.
  const c0 = process.hrtime.bigint();
  rocAuc(labels, scores);
  const firstCallMs = Number(process.hrtime.bigint() - c0) / 1e6;
  const runs = 5;
  const times: number[] = [];
  let auc = 0;
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    auc = rocAuc(labels, scores);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(
    JSON.stringify({ benchmark: 'rocAuc', n, runs, medianMs: Number(times[runs >> 1].toFixed(2)), minMs: Number(times[0].toFixed(2)), firstCallMs: Number(firstCallMs.toFixed(2)), auc, node: process.version }),
  );
}

main();
