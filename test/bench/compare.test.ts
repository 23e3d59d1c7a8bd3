/**
 * src/bench/compare.ts (our engine vs Python PyTorch, issue 7) on hand-made JSON lines, and
 * bench/python_baseline.py for real on the CPU where /usr/bin/python3 has torch and torchvision
 * (apt-get install -y python3-torch python3-torchvision); without them that one test is skipped.
 */
import { spawnSync } from 'child_process';
import { TORCH_PYTHON, requireTorchOrWarn } from '../python-torch';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BenchRow, compareRows, formatComparison, formatComparisonMarkdown, parseBenchLines } from '../../src/bench/compare';

interface RowFields {
  implementation?: string;
  model?: string;
  batchSize?: number;
  imageSize?: number;
  precision?: string;
  device?: string;
  imagesPerSecond?: number;
  peakMemoryBytes?: number | null;
  cudaGraph?: boolean;
  error?: string;
}

/** A JSON line as the benches write it: defaults for the join keys, overridden per test. */
function benchLine(fields: RowFields): string {
  return JSON.stringify({
    benchmark: 'model',
    model: 'efficientnet-b0',
    batchSize: 8,
    imageSize: 256,
    precision: 'bf16',
    device: 'cuda',
    seconds: 1,
    ...fields,
  });
}

function rowsOf(...fields: RowFields[]): BenchRow[] {
  return parseBenchLines(fields.map(benchLine).join('\n'));
}

describe('parseBenchLines', () => {
  test('keeps model rows and skips blank lines, build logs, broken JSON and other benchmarks', () => {
    const text = [
      '[cmake-js] compiling engine.cc',
      '',
      '   ',
      benchLine({ imagesPerSecond: 1000, cudaGraph: true, peakMemoryBytes: 2 * 1024 * 1024 }),
      '{"benchmark": "model", "model": ',
      '42',
      '[1, 2]',
      JSON.stringify({ benchmark: 'rocAuc', n: 1000000, medianMs: 158 }),
      'measuring efficientnet-b0 batch 8 bf16 eager ...',
      benchLine({ implementation: 'python-eager', batchSize: 32, imagesPerSecond: 596 }) + '\r',
    ].join('\n');
    const rows = parseBenchLines(text);
    expect(rows).toEqual([
      {
        implementation: 'native',
        model: 'efficientnet-b0',
        batchSize: 8,
        imageSize: 256,
        precision: 'bf16',
        device: 'cuda',
        imagesPerSecond: 1000,
        peakMemoryBytes: 2 * 1024 * 1024,
        cudaGraph: true,
        error: null,
      },
      {
        implementation: 'python-eager',
        model: 'efficientnet-b0',
        batchSize: 32,
        imageSize: 256,
        precision: 'bf16',
        device: 'cuda',
        imagesPerSecond: 596,
        peakMemoryBytes: null,
        cudaGraph: null,
        error: null,
      },
    ]);
  });

  test('a model row without a join key is an error, not a silently missing configuration', () => {
    const text = ['noise', JSON.stringify({ benchmark: 'model', model: 'efficientnet-b0', imageSize: 256, precision: 'fp32', device: 'cuda' })].join('\n');
    expect(() => parseBenchLines(text)).toThrow('Line 2: a "model" benchmark row needs a number batchSize but has undefined');
  });

  test('an error row has no speed even if it carries one', () => {
    const [row] = rowsOf({ implementation: 'python-eager', error: 'out of memory', imagesPerSecond: 5 });
    expect(row.error).toBe('out of memory');
    expect(row.imagesPerSecond).toBeNull();
  });
});

describe('compareRows', () => {
  test('joins on model, batch, size, precision and device, and computes native/eager against the target', () => {
    const native = rowsOf(
      { batchSize: 8, imagesPerSecond: 1200 }, // 1200 / 200 = 6x >= 5x
      { batchSize: 128, imagesPerSecond: 2500 }, // 2500 / 2300 < 1.35x
      { batchSize: 128, precision: 'fp32', imagesPerSecond: 900 }, // fp32 must not join the bf16 Python row
    );
    const python = rowsOf(
      { implementation: 'python-eager', batchSize: 8, imagesPerSecond: 200, peakMemoryBytes: 512 * 1024 * 1024 },
      { implementation: 'python-graph', batchSize: 8, imagesPerSecond: 1054 },
      { implementation: 'python-eager', batchSize: 128, imagesPerSecond: 2300 },
    );
    const rows = compareRows(native, python);
    expect(rows.map((r) => [r.precision, r.batchSize])).toEqual([
      ['fp32', 128],
      ['bf16', 8],
      ['bf16', 128],
    ]);
    const [fp32, batch8, batch128] = rows;
    expect(batch8.ratio).toBeCloseTo(6, 10);
    expect(batch8.targetRatio).toBe(5);
    expect(batch8.met).toBe(true);
    expect(batch8.pythonGraph?.imagesPerSecond).toBe(1054);
    expect(batch8.pythonEager?.peakMemoryBytes).toBe(512 * 1024 * 1024);
    expect(batch128.ratio).toBeCloseTo(2500 / 2300, 10);
    expect(batch128.targetRatio).toBe(1.35);
    expect(batch128.met).toBe(false);
    expect(fp32.pythonEager).toBeNull();
    expect(fp32.ratio).toBeNull();
    expect(fp32.met).toBeNull();
  });

  test('targets apply to EfficientNet-B0 at 256 px on CUDA only', () => {
    const native = rowsOf(
      { batchSize: 32, imagesPerSecond: 400 },
      { batchSize: 32, imageSize: 512, imagesPerSecond: 400 },
      { batchSize: 32, model: 'efficientnet-b3', imagesPerSecond: 400 },
      { batchSize: 32, device: 'cpu', imagesPerSecond: 400 },
      { batchSize: 64, imagesPerSecond: 400 },
    );
    const python = native.map((row) => ({ ...row, implementation: 'python-eager', imagesPerSecond: 100 }));
    const rows = compareRows(native, python);
    const targeted = rows.filter((r) => r.targetRatio !== null);
    expect(targeted).toHaveLength(1);
    expect(targeted[0]).toMatchObject({ model: 'efficientnet-b0', imageSize: 256, device: 'cuda', batchSize: 32, targetRatio: 3.5, met: true });
    expect(rows.every((r) => r.ratio !== null && Math.abs(r.ratio - 4) < 1e-12)).toBe(true);
  });

  test('of several native rows for one key the fastest is kept and its setup named', () => {
    const native = rowsOf({ imagesPerSecond: 700, cudaGraph: false }, { imagesPerSecond: 1100, cudaGraph: true }, { error: 'out of memory', cudaGraph: true });
    const python = rowsOf({ implementation: 'python-eager', imagesPerSecond: 200 });
    const [row] = compareRows(native, python);
    expect(row.native?.imagesPerSecond).toBe(1100);
    expect(row.nativeSetup).toBe('graph');
    expect(row.nativeCandidates).toBe(3);
    expect(row.ratio).toBeCloseTo(5.5, 10);
    expect(formatComparison([row])).toContain('graph (fastest of 3)');
  });

  test('OOM rows: a native failure misses the target, a Python failure leaves nothing to compare', () => {
    const native = rowsOf({ batchSize: 256, error: 'out of memory' }, { batchSize: 128, imagesPerSecond: 3000 });
    const python = rowsOf(
      { implementation: 'python-eager', batchSize: 256, imagesPerSecond: 3500 },
      { implementation: 'python-eager', batchSize: 128, error: 'out of memory' },
      { implementation: 'python-graph', batchSize: 128, error: 'CUDA error: an illegal memory access was encountered' },
    );
    const rows = compareRows(native, python);
    const batch128 = rows.find((r) => r.batchSize === 128);
    const batch256 = rows.find((r) => r.batchSize === 256);
    expect(batch256).toMatchObject({ ratio: null, targetRatio: 1, met: false });
    expect(batch128).toMatchObject({ ratio: null, targetRatio: 1.35, met: null });
    const text = formatComparison(rows).split('\n');
    const line256 = text.find((line) => /^efficientnet-b0\s+256\s+256\s/.test(line));
    const line128 = text.find((line) => /^efficientnet-b0\s+256\s+128\s/.test(line));
    expect(line256).toMatch(/\bOOM\b.*\b3500\.0\b.*\bno\b/);
    expect(line128).toMatch(/\b3000\.0\b.*\bOOM\b.*CUDA error: an illegal memory access/);
  });
});

describe('formatting', () => {
  const native = rowsOf({ batchSize: 8, imagesPerSecond: 1234.56, cudaGraph: true, peakMemoryBytes: 3 * 1024 * 1024 * 1024 });
  const python = rowsOf({ implementation: 'python-eager', batchSize: 8, imagesPerSecond: 200, peakMemoryBytes: 1536 * 1024 * 1024 });
  const rows = compareRows(native, python);

  test('the text table aligns every column under its header', () => {
    const lines = formatComparison(rows).split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^model\s+size\s+batch\s+precision\s+device\s+native img\/s\s+native setup\s+python eager img\/s/);
    // Right-aligned numeric columns end where their header ends.
    const headerEnd = lines[0].indexOf('native img/s') + 'native img/s'.length;
    expect(lines[1].slice(0, headerEnd).endsWith('1234.6')).toBe(true);
    expect(lines[1]).toMatch(/\b6\.17x\s+>= 5x\s+yes\s+-\s+3072\s+1536$/);
  });

  test('markdown has a header row, a separator with one cell per column, and a row per comparison', () => {
    const lines = formatComparisonMarkdown(rows).split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe(
      '| model | size | batch | precision | device | native img/s | native setup | python eager img/s | native/eager | target | met | python graph img/s | native peak MiB | python peak MiB |',
    );
    const columns = lines[0].split('|').length;
    expect(lines[1]).toMatch(/^\|(-{3}:?\|)+$/);
    expect(lines[1].split('|').length).toBe(columns);
    expect(lines[2]).toBe('| efficientnet-b0 | 256 | 8 | bf16 | cuda | 1234.6 | graph | 200.0 | 6.17x | >= 5x | yes | - | 3072 | 1536 |');
  });

  test('a pipe inside an error message does not break the markdown row', () => {
    const failing = compareRows(rowsOf({ error: 'bad | thing' }), []);
    const row = formatComparisonMarkdown(failing).split('\n')[2];
    expect(row).toContain('bad \\| thing');
    expect(row.split(/(?<!\\)\|/).length).toBe(formatComparisonMarkdown(failing).split('\n')[0].split('|').length);
  });
});

const PYTHON = TORCH_PYTHON;
const hasTorch = requireTorchOrWarn('the bench/python_baseline.py test');
const testTorch = hasTorch ? test : test.skip;

testTorch('bench/python_baseline.py measures a tiny CPU configuration and writes one well-formed JSON line', () => {
  const script = path.join(__dirname, '..', '..', 'bench', 'python_baseline.py');
  const args = ['--device', 'cpu', '--models', 'efficientnet-b0', '--batch-sizes', '2', '--precisions', 'fp32', '--image-size', '32', '--steps', '1', '--warmup', '1'];
  const run = spawnSync(PYTHON, [script, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (run.status !== 0) throw new Error(`python_baseline.py failed (${run.status}): ${run.stderr}`);
  const lines = run.stdout.split('\n').filter((line) => line.trim() !== '');
  expect(lines).toHaveLength(1); // notes go to stderr: stdout stays pure JSON lines
  const row = JSON.parse(lines[0]) as Record<string, unknown>;
  const expectedTypes: Record<string, string> = {
    benchmark: 'string',
    implementation: 'string',
    model: 'string',
    widthFactor: 'number',
    batchSize: 'number',
    imageSize: 'number',
    accumulate: 'number',
    device: 'string',
    deviceName: 'string',
    precision: 'string',
    channelsLast: 'boolean',
    parameterCount: 'number',
    warmupSteps: 'number',
    steps: 'number',
    seconds: 'number',
    iterationsPerSecond: 'number',
    imagesPerSecond: 'number',
    peakMemoryBytes: 'object', // null on the CPU
    meanLoss: 'number',
    torchVersion: 'string',
  };
  expect(Object.keys(row).sort()).toEqual(Object.keys(expectedTypes).sort());
  for (const [key, type] of Object.entries(expectedTypes)) expect([key, typeof row[key]]).toEqual([key, type]);
  expect(row).toMatchObject({
    benchmark: 'model',
    implementation: 'python-eager',
    model: 'efficientnet-b0',
    widthFactor: 1,
    batchSize: 2,
    imageSize: 32,
    accumulate: 1,
    device: 'cpu',
    deviceName: 'cpu',
    precision: 'fp32',
    channelsLast: false,
    warmupSteps: 1,
    steps: 1,
    peakMemoryBytes: null,
  });
  const seconds = row.seconds as number;
  const imagesPerSecond = row.imagesPerSecond as number;
  expect(seconds).toBeGreaterThan(0);
  expect(imagesPerSecond).toBeGreaterThan(0);
  expect(imagesPerSecond).toBeCloseTo((2 * 1) / seconds, 6);
  expect(row.iterationsPerSecond as number).toBeCloseTo(1 / seconds, 6);
  // torchvision's B0 with a one-output head: 4,007,548 backbone parameters + 1280 weights + 1 bias.
  expect(row.parameterCount).toBe(4_008_829);
  expect(Number.isFinite(row.meanLoss as number)).toBe(true);
  expect(row.torchVersion).toMatch(/^\d+\.\d+/);
  // The line joins with a native row of the same configuration.
  const [joined] = compareRows(rowsOf({ batchSize: 2, imageSize: 32, precision: 'fp32', device: 'cpu', imagesPerSecond: imagesPerSecond * 2 }), parseBenchLines(run.stdout));
  expect(joined.ratio).toBeCloseTo(2, 10);
  expect(joined.targetRatio).toBeNull();
});

describe('narrowed models', () => {
  test('a widthFactor other than 1 is another network: it never joins the full-width Python row', () => {
    const lines = [
      JSON.stringify({ benchmark: 'model', implementation: 'native', model: 'efficientnet-b0', widthFactor: 0.25, batchSize: 8, imageSize: 64, precision: 'fp32', device: 'cpu', imagesPerSecond: 80 }),
      JSON.stringify({ benchmark: 'model', implementation: 'python-eager', model: 'efficientnet-b0', widthFactor: 1, batchSize: 8, imageSize: 64, precision: 'fp32', device: 'cpu', imagesPerSecond: 10 }),
    ].join('\n');
    const rows = parseBenchLines(lines);
    expect(rows.map((r) => r.model)).toEqual(['efficientnet-b0 x0.25', 'efficientnet-b0']);
    const compared = compareRows(rows.filter((r) => r.implementation === 'native'), rows.filter((r) => r.implementation !== 'native'));
    expect(compared).toHaveLength(2);
    expect(compared.every((row) => row.ratio === null)).toBe(true);
  });
});

describe('compare.js --markdown', () => {
  test('writes the table; an existing table is left untouched (exit 2, named) unless --replace', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'melanoma-compare-'));
    try {
      const lines = path.join(dir, 'rows.jsonl');
      writeFileSync(lines, [benchLine({ imagesPerSecond: 1000 }), benchLine({ implementation: 'python-eager', imagesPerSecond: 200 })].join('\n') + '\n');
      const table = path.join(dir, 'compare.md');
      const cli = path.resolve(__dirname, '../../dist/bench/compare.js');
      const compare = (...args: string[]) => spawnSync(process.execPath, [cli, lines, '--markdown', table, ...args], { encoding: 'utf8' });
      expect(compare().status).toBe(0);
      const written = readFileSync(table, 'utf8');
      expect(written).toContain('efficientnet-b0');
      writeFileSync(table, 'my notes');
      const refused = compare();
      expect(refused.status).toBe(2);
      expect(refused.stderr).toContain(`compare: ${table} already exists and was left untouched: choose another --markdown file, or pass --replace`);
      expect(readFileSync(table, 'utf8')).toBe('my notes');
      expect(compare('--replace').status).toBe(0);
      expect(readFileSync(table, 'utf8')).toBe(written);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
