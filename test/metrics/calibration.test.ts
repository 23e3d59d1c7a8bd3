import {
  applyTemperature, binaryNll, brierScore, calibrationSummary, expectedCalibrationError, fitTemperature, logit, reliabilityBins, sigmoid,
} from '../../src/metrics';
import { lcg } from './brute';

describe('ECE and Brier: hand-worked cases', () => {
  test('two equal-count bins', () => {
    // bins {0.1, 0.3}: mean 0.2, observed 0 -> gap 0.2; {0.6, 0.9}: mean 0.75, observed 1 -> 0.25
    expect(expectedCalibrationError([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9], 2)).toBeCloseTo(0.5 * 0.2 + 0.5 * 0.25, 15);
    expect(brierScore([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9])).toBeCloseTo((0.01 + 0.09 + 0.16 + 0.01) / 4, 15);
  });

  test('perfectly calibrated bins give ECE 0', () => {
    // Each bin holds 4 samples at p with exactly 4p positives.
    const p = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75];
    const y = [1, 0, 0, 0, 1, 1, 1, 0];
    expect(expectedCalibrationError(y, p, 2)).toBe(0);
  });

  test('tied probabilities never straddle a bin boundary (result independent of order)', () => {
    const bins = reliabilityBins([1, 0, 0, 1], [0.2, 0.2, 0.2, 0.8], { bins: 2 });
    expect(bins.map((b) => b.count)).toEqual([3, 1]);
    expect(bins[0]).toMatchObject({ lower: 0.2, upper: 0.2, count: 3, observedFrequency: 1 / 3 });
    expect(bins[0].meanPredicted).toBeCloseTo(0.2, 15);
    const reordered = reliabilityBins([0, 0, 1, 1], [0.2, 0.2, 0.2, 0.8], { bins: 2 });
    expect(reordered).toEqual(bins);
  });

  test('equal-width bins', () => {
    const s = calibrationSummary([0, 1, 1, 0, 1], [0.05, 0.15, 0.55, 0.58, 1], { bins: 10, strategy: 'equal-width' });
    expect(s.bins.map((b) => b.count)).toEqual([1, 1, 2, 1]);
    expect(s.bins[2]).toMatchObject({ meanPredicted: (0.55 + 0.58) / 2, observedFrequency: 0.5 });
    // 1/5*|0-.05| + 1/5*|1-.15| + 2/5*|.5-.565| + 1/5*|1-1|
    expect(s.ece).toBeCloseTo((0.05 + 0.85 + 2 * 0.065) / 5, 15);
    expect(s.maxCalibrationError).toBeCloseTo(0.85, 15);
  });

  test('equal-count with uneven n: sizes differ by at most one and cover every sample', () => {
    const r = lcg(3);
    const p = Array.from({ length: 103 }, () => r());
    const y = p.map((v) => (r() < v ? 1 : 0));
    const bins = reliabilityBins(y, p, { bins: 10 });
    const counts = bins.map((b) => b.count);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(103);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    for (let i = 1; i < bins.length; i++) expect(bins[i].lower).toBeGreaterThan(bins[i - 1].upper);
  });

  test('EXPECTED FAILURE: probabilities outside [0, 1], bad bins, empty input', () => {
    expect(() => brierScore([0, 1], [0.5, 1.5])).toThrow(new RangeError('probabilities[1] must be a probability in [0, 1] but received 1.5'));
    expect(() => expectedCalibrationError([0, 1], [0.5, 0.5], 0)).toThrow(new RangeError('Expected positive integer for bins but received 0'));
    expect(() => brierScore([], [])).toThrow('Expected at least one sample for calibration but received 0');
    expect(() => brierScore([0, 1, 0], [0.5, 0.5])).toThrow('labels and probabilities must have the same length but received 3 labels and 2 probabilities');
  });
});

describe('temperature scaling', () => {
  /** Labels drawn from sigmoid(z); the model reports z * T0, i.e. is overconfident by T0. */
  function synthetic(T0: number, n: number, seed: number): { y: number[]; logits: number[] } {
    const r = lcg(seed);
    const y: number[] = [];
    const logits: number[] = [];
    for (let i = 0; i < n; i++) {
      // approximately normal(0, 2) from a sum of uniforms
      const z = (r() + r() + r() + r() - 2) * 2 * Math.sqrt(3);
      y.push(r() < sigmoid(z) ? 1 : 0);
      logits.push(z * T0);
    }
    return { y, logits };
  }

  test.each([[2.5], [0.5], [1]])('recovers a known temperature %p', (T0) => {
    const { y, logits } = synthetic(T0, 40000, 17);
    const fit = fitTemperature(y, logits);
    expect(Math.abs(fit.temperature - T0) / T0).toBeLessThan(0.05);
    expect(fit.nllAfter).toBeLessThanOrEqual(fit.nllBefore + 1e-15);
    // It is the minimum: nearby temperatures are no better.
    expect(() => binaryNll([], [])).toThrow(new RangeError('Expected at least one sample for calibration but received 0')); // not NaN
    expect(binaryNll(y, logits, fit.temperature * 1.01)).toBeGreaterThan(fit.nllAfter);
    expect(binaryNll(y, logits, fit.temperature / 1.01)).toBeGreaterThan(fit.nllAfter);
  });

  test('first-order optimality: dNLL/dT = 0 at the fitted T', () => {
    const { y, logits } = synthetic(3, 5000, 4);
    const { temperature: T } = fitTemperature(y, logits);
    const h = 1e-5 * T;
    const slope = (binaryNll(y, logits, T + h) - binaryNll(y, logits, T - h)) / (2 * h);
    expect(Math.abs(slope)).toBeLessThan(1e-7);
  });

  test('applyTemperature and a calibrated model lowers the ECE', () => {
    const { y, logits } = synthetic(3, 20000, 8);
    const { temperature } = fitTemperature(y, logits);
    const before = expectedCalibrationError(y, applyTemperature(logits, 1));
    const after = expectedCalibrationError(y, applyTemperature(logits, temperature));
    expect(after).toBeLessThan(before / 2);
    expect(applyTemperature([0, 2, -4], 2)[1]).toBeCloseTo(1 / (1 + Math.exp(-1)), 15);
  });

  test('NLL is finite for huge logits (log-sum-exp form)', () => {
    expect(binaryNll([1, 0], [1000, -1000])).toBe(0);
    expect(binaryNll([0], [800])).toBeCloseTo(800, 10);
    expect(logit(0)).toBeCloseTo(Math.log(1e-7 / (1 - 1e-7)), 10);
    expect(logit(0.5)).toBe(0);
  });

  test('EXPECTED FAILURE: separable, reversed, bad temperature', () => {
    expect(() => fitTemperature([0, 1], [-1, 1])).toThrow(
      new RangeError('Temperature scaling is undefined: the logits separate the classes perfectly, so the NLL keeps falling as T -> 0'),
    );
    expect(() => fitTemperature([1, 0, 1, 0], [-2, 2, -1, 1])).toThrow('Temperature scaling needs logits that rank positives above negatives');
    // All-zero logits: NLL is log 2 for every T (not "separable").
    expect(() => fitTemperature([1, 0, 0], [0, 0, 0])).toThrow('Temperature scaling needs logits that rank positives above negatives');
    // Zero logits do not break separability.
    expect(() => fitTemperature([1, 0, 0], [2, 0, -1])).toThrow('the logits separate the classes perfectly');
    expect(() => applyTemperature([1], 0)).toThrow(new RangeError('Expected a positive finite temperature but received 0'));
    expect(() => fitTemperature([1, 0], [1, NaN])).toThrow('logits[1] must be a finite number but received NaN');
  });
});
