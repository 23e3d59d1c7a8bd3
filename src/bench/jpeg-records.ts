/**
 * Generated SIIM-ISIC-style TFRecords of large JPEGs for the data-path and end-to-end
 * benchmarks, cached by their parameters. Rendering a lesion is slow and decoding cost is per
 * record, so `distinct` JPEGs are rendered and repeated over `records` records.
 */
import { existsSync, promises as fsp } from 'fs';
import * as path from 'path';
import sharp from 'sharp';
import { makeDirectory } from '../files';
import { renderLesion } from '../data/demo';
import { mixSeed, mulberry32 } from '../data/random';
import { encodeExample, writeTfRecordFile } from '../data/tfrecord';

export interface JpegRecordsOptions {
  /** Cache folder; the set goes into a subfolder named after the parameters. */
  dir: string;
  records: number;
  distinct: number;
  sourceSize: number;
  /** TFRecord files the records are spread over. */
  files: number;
}

/** The folder of the set, generated unless it is there already. Every 10th image is a melanoma. */
export async function ensureJpegRecords({ dir, records, distinct, sourceSize, files }: JpegRecordsOptions): Promise<string> {
  const setDir = path.join(dir, `jpeg${sourceSize}-n${records}-d${distinct}`);
  const per = Math.ceil(records / files);
  const names = Array.from({ length: files }, (_, f) => Math.min(per, records - f * per))
    .map((count, f) => (count > 0 ? `bench${String(f).padStart(2, '0')}-${count}.tfrec` : null))
    .filter((name): name is string => name !== null);
  if (names.every((n) => existsSync(path.join(setDir, n)))) return setDir;
  await makeDirectory(setDir);
  const jpegs = await Promise.all(
    Array.from({ length: distinct }, (_, i) =>
      sharp(renderLesion(sourceSize, i % 10 === 0, mulberry32(mixSeed(7, i))), { raw: { width: sourceSize, height: sourceSize, channels: 3 } })
        .jpeg({ quality: 90 })
        .toBuffer(),
    ),
  );
  for (let f = 0; f < names.length; f++) {
    const encoded: Buffer[] = [];
    for (let i = f * per; i < Math.min(records, (f + 1) * per); i++) {
      encoded.push(
        encodeExample({
          image: jpegs[i % distinct],
          image_name: `BENCH_${String(i).padStart(7, '0')}`,
          patient_id: i,
          sex: i % 2,
          age_approx: 50,
          anatom_site_general_challenge: 0,
          diagnosis: 0,
          target: i % distinct % 10 === 0 ? 1 : 0,
        }),
      );
    }
    await writeTfRecordFile(path.join(setDir, names[f]), encoded);
  }
  return setDir;
}
