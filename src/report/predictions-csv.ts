/**
 * Read a predictions CSV (`image_name, target, score[, patient_id][, fold]`), e.g. written by
 * this project or by a Python model, so that any model's results can be evaluated the same way.
 */
import * as fs from 'fs';
import { parse } from 'csv-parse/sync';

export interface PredictionRow {
  imageName: string;
  /** 1 = melanoma, 0 = benign. */
  target: 0 | 1;
  score: number;
  patientId?: string;
  fold?: string;
  /** From an optional score_scale column: 'rank' marks normalised ranks (a rank ensemble). */
  scoreScale?: 'probability' | 'logit' | 'rank';
}

/** A malformed predictions file; the message names the file, row, line and column. */
export class PredictionsFileError extends Error {
  override name = 'PredictionsFileError';
}

export const REQUIRED_COLUMNS = ['image_name', 'target', 'score'] as const;
export const OPTIONAL_COLUMNS = ['patient_id', 'fold', 'score_scale'] as const;

/** Parse CSV text; `file` is only used in error messages. */
export function parsePredictionsCsv(text: string, file = '<predictions>'): PredictionRow[] {
  // Binary bytes (a checkpoint, an image) would meet the CSV parser's quote errors: say what it is.
  if (text.includes('\u0000')) {
    const checkpoint = text.slice(8, 200).includes('"melanoma.format"') || text.slice(8, 9) === '{';
    throw new PredictionsFileError(
      `${file} is ${checkpoint ? 'a checkpoint (.safetensors)' : 'a binary file'}, not a predictions CSV: pass a CSV of image_name,target,score, a run or cv folder (its validation or out-of-fold predictions), or score images into one with \`melanoma predict --scores\``,
    );
  }
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { bom: true, info: true, skip_empty_lines: true, trim: true }) as unknown as typeof records;
  } catch (e) {
    throw new PredictionsFileError(`${file}: not a valid CSV file: ${(e as Error).message}`);
  }
  if (records.length === 0) {
    throw new PredictionsFileError(`${file}: expected a header row with columns ${REQUIRED_COLUMNS.join(', ')} but the file is empty`);
  }
  const header = records[0].record.map((h) => h.toLowerCase());
  const col = (name: string): number => header.indexOf(name);
  const missing = REQUIRED_COLUMNS.filter((c) => col(c) < 0);
  if (missing.length) {
    throw new PredictionsFileError(
      `${file}: missing required column${missing.length > 1 ? 's' : ''} ${missing.map((m) => `"${m}"`).join(', ')}; expected columns ${REQUIRED_COLUMNS.join(', ')}[, patient_id][, fold] but the header has ${records[0].record.map((h) => `"${h}"`).join(', ')}`,
    );
  }
  for (const name of [...REQUIRED_COLUMNS, ...OPTIONAL_COLUMNS]) {
    if (header.indexOf(name) !== header.lastIndexOf(name)) {
      throw new PredictionsFileError(`${file}: column "${name}" appears more than once in the header`);
    }
  }
  const iImage = col('image_name');
  const iTarget = col('target');
  const iScore = col('score');
  const iPatient = col('patient_id');
  const iFold = col('fold');
  const iScale = col('score_scale');
  if (records.length === 1) throw new PredictionsFileError(`${file}: expected at least one data row after the header but found none`);

  const rows: PredictionRow[] = [];
  const firstRowOf = new Map<string, number>();
  for (let r = 1; r < records.length; r++) {
    const { record, info } = records[r];
    const where = (column: string): string => `${file}: row ${r} (line ${info.lines}), column "${column}"`;
    const nonEmpty = (i: number, column: string): string => {
      const v = record[i];
      if (v === undefined || v === '') throw new PredictionsFileError(`${where(column)}: expected a value but the cell is empty`);
      return v;
    };
    const imageName = nonEmpty(iImage, 'image_name');
    const previous = firstRowOf.get(imageName);
    if (previous !== undefined) {
      throw new PredictionsFileError(`${where('image_name')}: expected each image once but "${imageName}" already appeared in row ${previous}`);
    }
    firstRowOf.set(imageName, r);
    const targetText = nonEmpty(iTarget, 'target');
    const t = Number(targetText);
    if (t !== 0 && t !== 1) {
      throw new PredictionsFileError(`${where('target')}: expected 0 (benign) or 1 (melanoma) but received "${targetText}"`);
    }
    const scoreText = nonEmpty(iScore, 'score');
    const score = Number(scoreText);
    if (!Number.isFinite(score)) {
      throw new PredictionsFileError(`${where('score')}: expected a finite number but received "${scoreText}"`);
    }
    const row: PredictionRow = { imageName, target: t as 0 | 1, score };
    if (iPatient >= 0) row.patientId = nonEmpty(iPatient, 'patient_id');
    if (iFold >= 0) row.fold = nonEmpty(iFold, 'fold');
    if (iScale >= 0) {
      const scale = nonEmpty(iScale, 'score_scale');
      if (scale !== 'probability' && scale !== 'logit' && scale !== 'rank')
        throw new PredictionsFileError(`${where('score_scale')}: expected probability, logit or rank but received "${scale}"`);
      row.scoreScale = scale;
    }
    rows.push(row);
  }
  return rows;
}

/** Read and parse a predictions CSV file. */
export function readPredictionsCsv(path: string): PredictionRow[] {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PredictionsFileError(
      err.code === 'ENOENT' ? `${path}: predictions file not found` : `${path}: cannot read predictions file: ${err.message}`,
    );
  }
  return parsePredictionsCsv(text, path);
}
