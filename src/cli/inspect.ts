/**
 * `inspect <path>`: what a dataset holds (counts per file and fold, class balance, patients,
 * missing metadata, sampled image sizes and blank or streaked images, corrupt records). src/cli.ts registers it.
 */
import { Command, InvalidArgumentError } from 'commander';
import { formatInspection, inspectDataset } from '../data/inspect';
import { DEFAULT_OPTIONS } from '../model/config';

function nonNegativeInteger(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} expects an integer >= ${min} but received '${value}'`);
    return n;
  };
}

export function registerInspectCommand(program: Command): void {
  program
    .command('inspect')
    .description('summarize a dataset: counts per file and fold, class balance, patients, missing metadata, image sizes, corrupt records')
    .argument('<path>', 'folder of *.tfrec files, a .tfrec file, or a folder/CSV with ISIC JPEGs')
    .option('--csv <file>', 'CSV joined on image_name (text metadata for TFRecord sets)')
    .option('--folds <k>', 'patient-level folds to report, as train and cv make them (--seed); 0 for none', nonNegativeInteger('--folds', 0), 5)
    .option(
      '--sample-images <n>',
      "images whose size and content (blank or streaked) are checked, or 'all'",
      (value: string) => {
        if (value === 'all') return Infinity;
        const n = Number(value);
        if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`--sample-images expects an integer >= 0 or 'all' but received '${value}'`);
        return n;
      },
      20,
    )
    .option('--seed <n>', "seed of the patient folds and the image sample (default: train's, so the folds shown are the ones train --fold k validates on)", nonNegativeInteger('--seed', 0), DEFAULT_OPTIONS.seed)
    .option('--workers <n>', 'sampled images checked at once (default: CPU cores)', nonNegativeInteger('--workers', 1))
    .option('--no-verify-crc', 'skip the TFRecord CRC checks')
    .option('--json', 'print JSON instead of text')
    .action(async (source: string, opts: { csv?: string; folds: number; sampleImages: number; seed: number; workers?: number; verifyCrc: boolean; json?: boolean }) => {
      if (opts.folds === 1) throw new InvalidArgumentError('--folds must be 0 (none) or >= 2');
      // On stderr, so a report piped to a file (or --json) stays clean; only on a terminal.
      const live = Boolean(process.stderr.isTTY);
      let report;
      try {
        report = await inspectDataset(source, {
          csv: opts.csv,
          folds: opts.folds,
          sampleImages: opts.sampleImages,
          seed: opts.seed,
          workers: opts.workers,
          verifyCrc: opts.verifyCrc,
          onProgress: live
            ? (p) => process.stderr.write(`\rchecking images: ${p.done}/${p.total}, ${p.imagesPerSecond.toFixed(1)} img/s, eta ${p.etaSeconds.toFixed(0)}s  `)
            : undefined,
        });
      } finally {
        if (live) process.stderr.write('\r\x1b[2K');
      }
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatInspection(report));
      if (report.corrupt.length) process.exitCode = 1;
    });
}
