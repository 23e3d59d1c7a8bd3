/**
 * Our engine's training throughput against Python PyTorch on the same machine (issue 7).
 * Reads the JSON lines of `npm run bench` (our engine) and of bench/python_baseline.py, joins
 * them on (model, batch, image size, precision, device) and prints native/eager ratios against
 * the targets. Build with `npm run build:ts`, run with
 * `node dist/bench/compare.js native.jsonl python.jsonl [--markdown out.md]`.
 * Rows say which implementation made them, so the files may come in any order or be one file.
 */
import { existsSync, readFileSync } from 'fs';
import { OutputExistsError, writeFileAtomic, writeNewFile } from '../files';

/** One model-benchmark line, reduced to what the comparison needs. */
export interface BenchRow {
  /** "native" for our engine (also when the line has no implementation field), else e.g. "python-eager". */
  implementation: string;
  model: string;
  batchSize: number;
  imageSize: number;
  precision: string;
  device: string;
  /** null on an error row. */
  imagesPerSecond: number | null;
  peakMemoryBytes: number | null;
  /** Our engine's setup: true when the step was replayed from a CUDA graph; null when not said. */
  cudaGraph: boolean | null;
  error: string | null;
}

/** The measurement shown for one implementation in one comparison row. */
export interface Measurement {
  imagesPerSecond: number | null;
  peakMemoryBytes: number | null;
  error: string | null;
}

export interface ComparisonRow {
  model: string;
  batchSize: number;
  imageSize: number;
  precision: string;
  device: string;
  /** The fastest native row for this key (or its first error row when none ran). */
  native: Measurement | null;
  /** "graph" or "eager" from the chosen native row's cudaGraph field; null when it has none. */
  nativeSetup: string | null;
  /** How many native rows shared this key (the fastest was kept). */
  nativeCandidates: number;
  pythonEager: Measurement | null;
  pythonGraph: Measurement | null;
  /** native img/s / Python eager img/s; null when either is missing or failed. */
  ratio: number | null;
  /** The minimum ratio for this configuration; null where it sets none. */
  targetRatio: number | null;
  /** null where there is no target or nothing to compare against. */
  met: boolean | null;
}

/**
 * Issue 7's targets: EfficientNet-B0 at 256 px on the GPU must beat Python eager by these factors.
 * Eager PyTorch is launch-bound at small batches (gpu-anchors.md), hence the larger factors there.
 */
const TARGET_RATIOS: ReadonlyMap<number, number> = new Map([
  [8, 5],
  [32, 3.5],
  [128, 1.35],
  [256, 1.0],
]);

export function targetRatio(model: string, imageSize: number, batchSize: number, device: string): number | null {
  if (model !== 'efficientnet-b0' || imageSize !== 256 || device !== 'cuda') return null;
  return TARGET_RATIOS.get(batchSize) ?? null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function finiteOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function requireField<T>(record: Record<string, unknown>, key: string, kind: 'string' | 'number', lineNumber: number): T {
  const value = record[key];
  if (typeof value !== kind) {
    throw new TypeError(`Line ${lineNumber}: a "model" benchmark row needs a ${kind} ${key} but has ${JSON.stringify(value)}`);
  }
  return value as T;
}

/**
 * The model-benchmark rows of a JSON-lines text. Blank lines, anything that is not a JSON object
 * (build logs, progress notes captured with 2>&1) and other benchmarks are skipped; a model row
 * without one of the join keys throws, since dropping it silently would hide a configuration.
 */
export function parseBenchLines(text: string): BenchRow[] {
  const rows: BenchRow[] = [];
  text.split(/\r?\n/).forEach((rawLine, index) => {
    const line = rawLine.trim();
    if (!line.startsWith('{')) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    if (!isRecord(parsed) || parsed.benchmark !== 'model') return;
    const lineNumber = index + 1;
    const error = parsed.error === undefined || parsed.error === null ? null : String(parsed.error);
    rows.push({
      implementation: typeof parsed.implementation === 'string' ? parsed.implementation : 'native',
      // A narrowed model (widthFactor != 1) is another network: it joins and reads as one.
      model: modelLabel(requireField<string>(parsed, 'model', 'string', lineNumber), parsed.widthFactor),
      batchSize: requireField<number>(parsed, 'batchSize', 'number', lineNumber),
      imageSize: requireField<number>(parsed, 'imageSize', 'number', lineNumber),
      precision: requireField<string>(parsed, 'precision', 'string', lineNumber),
      device: requireField<string>(parsed, 'device', 'string', lineNumber),
      imagesPerSecond: error === null ? finiteOrNull(parsed.imagesPerSecond) : null,
      peakMemoryBytes: finiteOrNull(parsed.peakMemoryBytes),
      cudaGraph: typeof parsed.cudaGraph === 'boolean' ? parsed.cudaGraph : null,
      error,
    });
  });
  return rows;
}

function modelLabel(model: string, widthFactor: unknown): string {
  return typeof widthFactor === 'number' && widthFactor !== 1 ? `${model} x${widthFactor}` : model;
}

function joinKey(row: Pick<BenchRow, 'model' | 'batchSize' | 'imageSize' | 'precision' | 'device'>): string {
  return JSON.stringify([row.model, row.batchSize, row.imageSize, row.precision, row.device]);
}

/** The fastest row that ran; when none ran, the first failure, so its error is shown. */
function fastest(rows: readonly BenchRow[]): BenchRow | null {
  let best: BenchRow | null = null;
  for (const row of rows) {
    if (best === null) best = row;
    else if (row.imagesPerSecond !== null && (best.imagesPerSecond === null || row.imagesPerSecond > best.imagesPerSecond)) best = row;
  }
  return best;
}

function measurement(row: BenchRow | null): Measurement | null {
  return row === null ? null : { imagesPerSecond: row.imagesPerSecond, peakMemoryBytes: row.peakMemoryBytes, error: row.error };
}

function groupByKey(rows: readonly BenchRow[], into: Map<string, { sample: BenchRow; rows: BenchRow[] }>): void {
  for (const row of rows) {
    const key = joinKey(row);
    const group = into.get(key);
    if (group) group.rows.push(row);
    else into.set(key, { sample: row, rows: [row] });
  }
}

const PRECISION_ORDER = ['fp32', 'bf16', 'fp16'];

function precisionRank(precision: string): number {
  const rank = PRECISION_ORDER.indexOf(precision);
  return rank === -1 ? PRECISION_ORDER.length : rank;
}

/**
 * One row per (model, batch, image size, precision, device) seen in either input. Python rows
 * are told apart by implementation ("python-eager", "python-graph"; others are ignored); when
 * several rows share a key (reruns, channels_last on and off, graph and eager native setups) the
 * fastest is kept for each side, so the ratio is against Python's best eager figure.
 */
export function compareRows(native: readonly BenchRow[], python: readonly BenchRow[]): ComparisonRow[] {
  const nativeGroups = new Map<string, { sample: BenchRow; rows: BenchRow[] }>();
  const eagerGroups = new Map<string, { sample: BenchRow; rows: BenchRow[] }>();
  const graphGroups = new Map<string, { sample: BenchRow; rows: BenchRow[] }>();
  groupByKey(native, nativeGroups);
  groupByKey(python.filter((row) => row.implementation === 'python-eager'), eagerGroups);
  groupByKey(python.filter((row) => row.implementation === 'python-graph'), graphGroups);

  const samples = new Map<string, BenchRow>();
  for (const groups of [nativeGroups, eagerGroups, graphGroups]) {
    for (const [key, group] of groups) if (!samples.has(key)) samples.set(key, group.sample);
  }

  const rows: ComparisonRow[] = [];
  for (const [key, sample] of samples) {
    const nativeRows = nativeGroups.get(key)?.rows ?? [];
    const nativeBest = fastest(nativeRows);
    const eagerBest = fastest(eagerGroups.get(key)?.rows ?? []);
    const graphBest = fastest(graphGroups.get(key)?.rows ?? []);
    const nativeSpeed = nativeBest?.imagesPerSecond ?? null;
    const eagerSpeed = eagerBest?.imagesPerSecond ?? null;
    const ratio = nativeSpeed !== null && eagerSpeed !== null && eagerSpeed > 0 ? nativeSpeed / eagerSpeed : null;
    const target = targetRatio(sample.model, sample.imageSize, sample.batchSize, sample.device);
    // A native failure where Python ran misses the target; a Python failure leaves nothing to compare.
    const nativeFailedAlone = nativeBest !== null && nativeSpeed === null && eagerSpeed !== null;
    const met = target === null ? null : ratio !== null ? ratio >= target : nativeFailedAlone ? false : null;
    rows.push({
      model: sample.model,
      batchSize: sample.batchSize,
      imageSize: sample.imageSize,
      precision: sample.precision,
      device: sample.device,
      native: measurement(nativeBest),
      nativeSetup: nativeBest === null || nativeBest.cudaGraph === null ? null : nativeBest.cudaGraph ? 'graph' : 'eager',
      nativeCandidates: nativeRows.length,
      pythonEager: measurement(eagerBest),
      pythonGraph: measurement(graphBest),
      ratio,
      targetRatio: target,
      met,
    });
  }
  return rows.sort(
    (a, b) =>
      a.model.localeCompare(b.model) ||
      a.device.localeCompare(b.device) ||
      a.imageSize - b.imageSize ||
      precisionRank(a.precision) - precisionRank(b.precision) ||
      a.precision.localeCompare(b.precision) ||
      a.batchSize - b.batchSize,
  );
}

const MIB = 1024 * 1024;

function speedCell(value: Measurement | null): string {
  if (value === null) return '-';
  if (value.error !== null) return /out of memory/i.test(value.error) ? 'OOM' : value.error;
  return value.imagesPerSecond === null ? '?' : value.imagesPerSecond.toFixed(1);
}

function memoryCell(value: Measurement | null): string {
  return value?.peakMemoryBytes == null ? '-' : (value.peakMemoryBytes / MIB).toFixed(0);
}

function setupCell(row: ComparisonRow): string {
  const setup = row.nativeSetup ?? '-';
  return row.nativeCandidates > 1 ? `${setup} (fastest of ${row.nativeCandidates})` : setup;
}

const HEADERS = [
  'model',
  'size',
  'batch',
  'precision',
  'device',
  'native img/s',
  'native setup',
  'python eager img/s',
  'native/eager',
  'target',
  'met',
  'python graph img/s',
  'native peak MiB',
  'python peak MiB',
];
/** Columns holding numbers, right-aligned in the text table. */
const NUMERIC_COLUMNS = new Set(['size', 'batch', 'native img/s', 'python eager img/s', 'native/eager', 'target', 'python graph img/s', 'native peak MiB', 'python peak MiB']);

function cells(row: ComparisonRow): string[] {
  return [
    row.model,
    String(row.imageSize),
    String(row.batchSize),
    row.precision,
    row.device,
    speedCell(row.native),
    setupCell(row),
    speedCell(row.pythonEager),
    row.ratio === null ? '-' : `${row.ratio.toFixed(2)}x`,
    row.targetRatio === null ? '-' : `>= ${row.targetRatio}x`,
    row.met === null ? '-' : row.met ? 'yes' : 'no',
    speedCell(row.pythonGraph),
    memoryCell(row.native),
    memoryCell(row.pythonEager),
  ];
}

/** A plain text table, columns padded to their widest cell. */
export function formatComparison(rows: readonly ComparisonRow[]): string {
  const table = [HEADERS, ...rows.map(cells)];
  const widths = HEADERS.map((_, column) => Math.max(...table.map((line) => line[column].length)));
  return table
    .map((line) =>
      line
        .map((cell, column) => (NUMERIC_COLUMNS.has(HEADERS[column]) ? cell.padStart(widths[column]) : cell.padEnd(widths[column])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The same table in GitHub Markdown (for the README's Benchmarks section or an issue comment). */
export function formatComparisonMarkdown(rows: readonly ComparisonRow[]): string {
  const line = (values: readonly string[]): string => `| ${values.map((value) => value.replace(/\|/g, '\\|')).join(' | ')} |`;
  const separator = `|${HEADERS.map((header) => (NUMERIC_COLUMNS.has(header) ? '---:' : '---')).join('|')}|`;
  return [line(HEADERS), separator, ...rows.map((row) => line(cells(row)))].join('\n');
}

async function main(argv: readonly string[]): Promise<number> {
  const files: string[] = [];
  let markdownFile: string | null = null;
  let replace = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--markdown') {
      const next = argv[++i];
      if (next === undefined) return usage('--markdown needs a file name');
      markdownFile = next;
    } else if (argv[i] === '--replace') {
      replace = true;
    } else if (argv[i].startsWith('--')) {
      return usage(`unknown option ${argv[i]}`);
    } else {
      files.push(argv[i]);
    }
  }
  if (files.length === 0) return usage('give at least one JSON-lines file');
  // A table written earlier is a result too: replaced only when asked (gpu-run's second compare).
  if (markdownFile !== null && !replace && existsSync(markdownFile)) return usage(`${markdownFile} already exists and was left untouched: choose another --markdown file, or pass --replace`);
  const missing = files.filter((file) => !existsSync(file));
  if (missing.length > 0) return usage(`no such file: ${missing.join(', ')} (did its benchmark run?)`);
  const all = files.flatMap((file) => parseBenchLines(readFileSync(file, 'utf8')));
  const native = all.filter((row) => row.implementation === 'native');
  const python = all.filter((row) => row.implementation.startsWith('python-'));
  if (native.length === 0) console.error('compare: no native model rows (lines with benchmark "model" and no or a "native" implementation)');
  if (python.length === 0) console.error('compare: no Python rows (bench/python_baseline.py output)');
  const rows = compareRows(native, python);
  console.log(formatComparison(rows));
  if (markdownFile !== null) {
    const table = Buffer.from(formatComparisonMarkdown(rows) + '\n');
    try {
      // Atomically; without --replace a table that appeared meanwhile is refused, not clobbered.
      if (replace) await writeFileAtomic(markdownFile, table, { overwrite: true });
      else await writeNewFile(markdownFile, table, 'choose another --markdown file, or pass --replace');
    } catch (e) {
      if (e instanceof OutputExistsError) return usage(e.message);
      throw e;
    }
  }
  return 0;
}

function usage(problem: string): number {
  console.error(`compare: ${problem}\nUsage: node dist/bench/compare.js native.jsonl python.jsonl [--markdown out.md [--replace]]`);
  return 2;
}

// Run only as a script, so tests can import the functions above.
if (require.main === module) {
  main(process.argv.slice(2)).then((code) => (process.exitCode = code), (e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
