import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parsePredictionsCsv, PredictionsFileError, readPredictionsCsv } from '../../src/report/predictions-csv';

describe('parsePredictionsCsv', () => {
  test('required and optional columns, any order, BOM, CRLF, extra columns ignored', () => {
    const text = '\ufeffscore,image_name,extra,target,fold,patient_id\r\n0.25,ISIC_1,x,0,1,IP_1\r\n0.75,ISIC_2,y,1,2,IP_2\r\n\r\n';
    expect(parsePredictionsCsv(text, 'p.csv')).toEqual([
      { imageName: 'ISIC_1', target: 0, score: 0.25, patientId: 'IP_1', fold: '1' },
      { imageName: 'ISIC_2', target: 1, score: 0.75, patientId: 'IP_2', fold: '2' },
    ]);
  });

  test('a checkpoint or other binary file is named for what it is, not met with CSV quote errors', () => {
    const header = Buffer.from(JSON.stringify({ __metadata__: { 'melanoma.format': 'melanoma-native/checkpoint-v1' } }));
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    const checkpoint = Buffer.concat([length, header]).toString('latin1');
    const fix = 'not a predictions CSV: pass a CSV of image_name,target,score, a run or cv folder (its validation or out-of-fold predictions), or score images into one with `melanoma predict --scores`';
    expect(() => parsePredictionsCsv(checkpoint, 'best.safetensors')).toThrow(new PredictionsFileError(`best.safetensors is a checkpoint (.safetensors), ${fix}`));
    expect(() => parsePredictionsCsv('\u00ff\u00d8\u00ff\u0000\u0010JFIF', 'x.jpg')).toThrow(new PredictionsFileError(`x.jpg is a binary file, ${fix}`));
  });

  test('minimal columns; targets written as 1.0/0.0 (pandas floats) and scientific scores', () => {
    expect(parsePredictionsCsv('image_name,target,score\nA,1.0,1e-3\nB,0.0,-2.5\n')).toEqual([
      { imageName: 'A', target: 1, score: 0.001 },
      { imageName: 'B', target: 0, score: -2.5 },
    ]);
  });

  test.each([
    ['image_name,target\nA,1\n', 'p.csv: missing required column "score"; expected columns image_name, target, score[, patient_id][, fold] but the header has "image_name", "target"'],
    ['name,label,prob\nA,1,0.5\n', 'p.csv: missing required columns "image_name", "target", "score"; expected columns image_name, target, score[, patient_id][, fold] but the header has "name", "label", "prob"'],
    ['image_name,target,score\nA,1,0.5\nB,0,abc\n', 'p.csv: row 2 (line 3), column "score": expected a finite number but received "abc"'],
    ['image_name,target,score\nA,1,NaN\n', 'p.csv: row 1 (line 2), column "score": expected a finite number but received "NaN"'],
    ['image_name,target,score\nA,1,\n', 'p.csv: row 1 (line 2), column "score": expected a value but the cell is empty'],
    ['image_name,target,score\nA,2,0.5\n', 'p.csv: row 1 (line 2), column "target": expected 0 (benign) or 1 (melanoma) but received "2"'],
    ['image_name,target,score\nA,malignant,0.5\n', 'p.csv: row 1 (line 2), column "target": expected 0 (benign) or 1 (melanoma) but received "malignant"'],
    ['image_name,target,score\nA,1,0.5\n\nA,0,0.2\n', 'p.csv: row 2 (line 4), column "image_name": expected each image once but "A" already appeared in row 1'],
    ['image_name,target,score,patient_id\nA,1,0.5,\n', 'p.csv: row 1 (line 2), column "patient_id": expected a value but the cell is empty'],
    ['', 'p.csv: expected a header row with columns image_name, target, score but the file is empty'],
    ['image_name,target,score\n', 'p.csv: expected at least one data row after the header but found none'],
    ['image_name,target,score,score\nA,1,0.5,0.4\n', 'p.csv: column "score" appears more than once in the header'],
  ])('EXPECTED FAILURE %#: %j', (text, message) => {
    expect(() => parsePredictionsCsv(text, 'p.csv')).toThrow(new PredictionsFileError(message));
    expect(() => parsePredictionsCsv(text, 'p.csv')).toThrow(PredictionsFileError);
  });

  test('EXPECTED FAILURE: ragged rows name the file and line', () => {
    expect(() => parsePredictionsCsv('image_name,target,score\nA,1,0.5,9\n', 'p.csv')).toThrow(/^p\.csv: not a valid CSV file: .*line 2/);
  });
});

describe('readPredictionsCsv', () => {
  test('reads a file; a missing file is named', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'preds-'));
    const file = path.join(dir, 'preds.csv');
    fs.writeFileSync(file, 'image_name,target,score\nA,1,0.5\n');
    expect(readPredictionsCsv(file)).toEqual([{ imageName: 'A', target: 1, score: 0.5 }]);
    expect(() => readPredictionsCsv(path.join(dir, 'nope.csv'))).toThrow(new PredictionsFileError(`${path.join(dir, 'nope.csv')}: predictions file not found`));
    fs.rmSync(dir, { recursive: true });
  });
});
