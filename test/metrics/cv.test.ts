import { aggregateByPatient, crossValidationSummary, delongCi, rocAuc, ScoredRow } from '../../src/metrics';
import { lcg } from './brute';

function rows(seed: number, n: number, folds: number, imagesPerPatient = 1): ScoredRow[] {
  const r = lcg(seed);
  const out: ScoredRow[] = [];
  for (let i = 0; i < n; i++) {
    const patient = Math.floor(i / imagesPerPatient);
    const target = r() < 0.25 ? 1 : 0;
    out.push({ imageName: `ISIC_${i}`, patientId: `IP_${patient}`, fold: patient % folds, target, score: Math.round((r() * 0.8 + target * 0.3) * 50) / 50 });
  }
  return out;
}

describe('crossValidationSummary', () => {
  test('per-fold AUC, mean +- sd and pooled AUC with DeLong CI', () => {
    const data = rows(1, 500, 5);
    const cv = crossValidationSummary(data);
    expect(cv.folds.map((f) => f.fold)).toEqual(['0', '1', '2', '3', '4']);
    const foldAucs = [0, 1, 2, 3, 4].map((k) => {
      const sub = data.filter((r) => r.fold === k);
      return rocAuc(sub.map((r) => r.target), sub.map((r) => r.score));
    });
    cv.folds.forEach((f, k) => expect(f.auc).toBe(foldAucs[k]));
    const m = foldAucs.reduce((a, b) => a + b, 0) / 5;
    expect(cv.meanAuc).toBeCloseTo(m, 15);
    expect(cv.sdAuc).toBeCloseTo(Math.sqrt(foldAucs.reduce((a, b) => a + (b - m) ** 2, 0) / 4), 15);
    const pooled = delongCi(data.map((r) => r.target), data.map((r) => r.score));
    expect(cv.pooled.auc).toBe(pooled.auc);
    expect(cv.pooled.delong!.ci).toEqual(pooled.ci);
    expect(cv.patientsInSeveralFolds).toEqual([]);
  });

  test('a fold with one class reports null with the reason, not 0.5', () => {
    const data: ScoredRow[] = [
      { target: 1, score: 0.9, fold: 'a' }, { target: 0, score: 0.1, fold: 'a' }, { target: 0, score: 0.2, fold: 'b' },
      { target: 0, score: 0.4, fold: 'b' }, { target: 1, score: 0.3, fold: 'a' }, { target: 0, score: 0.35, fold: 'a' },
    ];
    const cv = crossValidationSummary(data);
    expect(cv.folds[1]).toEqual({
      fold: 'b', n: 2, positives: 0, negatives: 2, auc: null,
      reason: 'AUC is undefined in fold b: expected both classes but received 0 positives and 2 negatives',
    });
    expect(cv.meanAuc).toBe(cv.folds[0].auc);
    expect(cv.sdAuc).toBeNull();
  });

  test('patients appearing in several folds are reported', () => {
    const data = rows(2, 60, 3, 2).map((r, i) => (i === 0 ? { ...r, fold: 2 } : r));
    expect(crossValidationSummary(data).patientsInSeveralFolds).toEqual(['IP_0']);
  });
});

describe('aggregateByPatient', () => {
  const data: ScoredRow[] = [
    { patientId: 'A', target: 0, score: 0.2, fold: 0 },
    { patientId: 'A', target: 1, score: 0.4, fold: 0 },
    { patientId: 'A', target: 0, score: 0.6, fold: 0 },
    { patientId: 'B', target: 0, score: 0.5, fold: 0 },
    { patientId: 'C', target: 0, score: 0.3, fold: 1 },
    { patientId: 'C', target: 0, score: 0.1, fold: 1 },
  ];
  test('max: positive if any image is, worst lesion score', () => {
    expect(aggregateByPatient(data, 'max')).toEqual([
      { id: 'A', target: 1, score: 0.6, fold: '0', images: 3 },
      { id: 'B', target: 0, score: 0.5, fold: '0', images: 1 },
      { id: 'C', target: 0, score: 0.3, fold: '1', images: 2 },
    ]);
  });
  test('mean', () => {
    const a = aggregateByPatient(data, 'mean');
    expect(a[0].score).toBeCloseTo(0.4, 15);
    expect(a[2].score).toBeCloseTo(0.2, 15);
  });
  test('per-patient CV: patient AUC differs from image AUC and equals a hand computation', () => {
    // patients A (1, 0.6), B (0, 0.5), C (0, 0.3): pooled patient AUC = 1; per image the
    // melanoma (0.4) ranks below two benign images (0.6, 0.5).
    const cv = crossValidationSummary(data, { aggregation: 'max' });
    expect(cv.pooled.auc).toBe(1);
    expect(cv.pooled.delong).toBeNull();
    expect(cv.pooled.delongReason).toContain('received 1 positive and 2 negatives');
    expect(rocAuc(data.map((r) => r.target), data.map((r) => r.score))).toBeLessThan(1);
  });
  test('EXPECTED FAILURE: missing patient id, missing fold, bad mode', () => {
    expect(() => aggregateByPatient([{ target: 1, score: 0.5, imageName: 'ISIC_1' }], 'max')).toThrow(
      new RangeError("Patient aggregation 'max' needs a patient id on every row but row 0 (ISIC_1) has none"),
    );
    expect(() => crossValidationSummary([{ target: 1, score: 0.5 }])).toThrow('Cross-validation summary needs a fold on every row but row 0 has none');
    expect(() => aggregateByPatient(data, 'median' as 'max')).toThrow(`Expected patient aggregation 'none', 'max' or 'mean' but received "median"`);
  });
});
