/** `convert`: a dataset into SIIM-ISIC TFRecords of square JPEGs at one size (src/data/convert.ts). */
import { Command, InvalidArgumentError, Option } from 'commander';
import { refuse } from './usage';
import { ConvertInterruptedError, ConvertResult, convertDataset } from '../data/convert';
import { stoppedExitCode, withStopSignals } from './interrupt';
import { DataError } from '../data/errors';

function integerIn(name: string, min: number, max: number) {
  return (value: string): number => {
    const v = Number(value);
    if (!/^\d+$/.test(value.trim()) || v < min || v > max) throw new InvalidArgumentError(`expected an integer between ${min} and ${max} for ${name} but received '${value}'`);
    return v;
  };
}

export function registerConvertCommand(program: Command): void {
  program
    .command('convert')
    .description('convert a dataset (JPEG folder with train.csv, TFRecords, a CSV) into patient-grouped SIIM-ISIC TFRecords of square JPEGs at one size, so epochs decode small images')
    .requiredOption('--data <path>', 'the source: a JPEG folder with train.csv, a folder of *.tfrec files, or a CSV')
    .option('--csv <file>', 'CSV with ISIC columns, joined on image_name for TFRecord sets')
    .requiredOption('--out <dir>', 'a new folder for the TFRecords and manifest.json (an existing one is refused)')
    .option('--size <px>', 'square size of the stored JPEGs (train at this size or below)', integerIn('--size', 32, 4096), 512)
    .addOption(new Option('--fit <fit>', 'fill: stretch to square, as the loader does; cover: crop the centre').choices(['fill', 'cover']).default('fill'))
    .option('--files <n>', 'TFRecord files (patients never span two; melanomas spread evenly)', integerIn('--files', 1, 10000), 15)
    .option('--quality <q>', 'JPEG quality', integerIn('--quality', 1, 100), 95)
    .option('--seed <n>', 'seed of the patient-to-file assignment', integerIn('--seed', 0, 0xffffffff), 42)
    .option('--workers <n>', 'images resized at once (default: CPU cores)', integerIn('--workers', 1, 1024))
    .option('--skip-bad-images', 'leave out images that cannot be read or decoded and list them in manifest.json (default: stop at the first)')
    .option('--skip-degenerate', 'leave out images that decode but hold no picture (one colour, or streaked: every row or column nearly the same); they are listed in manifest.json either way')
    .action(async (opts, command: Command) => {
      const live = Boolean(process.stdout.isTTY);
      const clearLine = () => live && process.stdout.write('\r\x1b[2K');
      await withStopSignals('stopping the conversion after the images in flight, and removing its partial folder (a second Ctrl-C or SIGTERM quits at once)...', async (signal) => {
        let result: ConvertResult;
        try {
          result = await convertDataset({
            data: opts.data,
            csv: opts.csv,
            out: opts.out,
            size: opts.size,
            fit: opts.fit,
            files: opts.files,
            quality: opts.quality,
            seed: opts.seed,
            workers: opts.workers,
            skipBadImages: Boolean(opts.skipBadImages),
            skipDegenerate: Boolean(opts.skipDegenerate),
            signal,
            log: (line) => {
              clearLine();
              console.log(line);
            },
            onProgress: (p) => {
              if (live) process.stdout.write(`\r${p.done}/${p.total} images, ${p.imagesPerSecond.toFixed(1)} img/s, eta ${p.etaSeconds.toFixed(0)}s  `);
            },
          });
        } catch (e) {
          clearLine();
          if (e instanceof ConvertInterruptedError) {
            console.error(e.message);
            return stoppedExitCode(signal);
          }
          // A bad source or option is the user's to fix: one line, exit 2.
          if (e instanceof DataError || e instanceof RangeError) refuse(command, `${e.message}`);
          throw e;
        }
        clearLine();
        printConverted(result, Boolean(opts.skipDegenerate));
        return 0;
      });
    });
}

function printConverted(result: ConvertResult, skipDegenerate: boolean): void {
  for (const s of result.skipped) console.log(`skipped ${s.imageName}: ${s.reason}`);
  const leftOut = result.skipped.length + (skipDegenerate ? result.degenerate.length : 0);
  console.log(`wrote ${result.out}: ${result.images} images in ${result.files.length} file(s)${leftOut ? `, ${leftOut} left out (listed in manifest.json)` : ''}`);
  if (result.degenerate.length) {
    const names = result.degenerate.slice(0, 5).map((d) => d.imageName).join(', ') + (result.degenerate.length > 5 ? ', ...' : '');
    console.log(
      skipDegenerate
        ? `left out ${result.degenerate.length} blank or streaked image(s) that hold no picture of a lesion (${names}; manifest.json "degenerate" lists them)`
        : `warning: ${result.degenerate.length} converted image(s) are blank or streaked and hold no picture of a lesion (${names}; manifest.json "degenerate" lists them); convert again with --skip-degenerate to leave them out`,
    );
  }
}
