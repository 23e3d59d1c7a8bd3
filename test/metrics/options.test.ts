/**
 * Every metric that takes an options object refuses a name it does not know (a misspelt
 * `bin` for `bins` would otherwise give the default silently), and a bad iteration count.
 */
import { bootstrapAuc } from '../../src/metrics/bootstrap';
import { calibrationSummary, fitTemperature, reliabilityBins } from '../../src/metrics/calibration';
import { crossValidationSummary } from '../../src/metrics/cv';
import { fitLogisticRegression } from '../../src/metrics/logistic';

const labels = [0, 1, 0, 1, 1, 0];
const scores = [0.1, 0.8, 0.3, 0.6, 0.9, 0.2];
const rows = labels.map((target, i) => ({ target, score: scores[i], patientId: `P${i}`, fold: String(i % 2), imageName: `I${i}` }));

test.each([
  ['reliabilityBins', () => reliabilityBins(labels, scores, { bin: 4 } as object), "Unknown option 'bin' of reliabilityBins: did you mean 'bins'? (options: bins, strategy)"],
  ['calibrationSummary', () => calibrationSummary(labels, scores, { strategie: 'equal-width' } as object), "Unknown option 'strategie' of calibrationSummary: did you mean 'strategy'? (options: bins, strategy)"],
  ['fitTemperature', () => fitTemperature(labels, scores, { iterations: 5 } as object), "Unknown option 'iterations' of fitTemperature: did you mean 'maxIterations'? (options: maxIterations)"],
  ['fitLogisticRegression', () => fitLogisticRegression(scores.map((s) => [s]), labels, { L2: 0 } as object), "Unknown option 'L2' of fitLogisticRegression: did you mean 'l2'? (options: l2, maxIterations)"],
  ['crossValidationSummary', () => crossValidationSummary(rows, { aggregate: 'max' } as object), "Unknown option 'aggregate' of crossValidationSummary: did you mean 'aggregation'? (options: aggregation, level)"],
  ['bootstrapAuc', () => bootstrapAuc(labels, scores, { replicate: 10 } as object), "Unknown option 'replicate' of bootstrapAuc: did you mean 'replicates'? (options: groups, replicates, seed, level, minTpr)"],
])('%s refuses an unknown option, naming the closest one', (_name, call, message) => {
  expect(call).toThrow(new TypeError(message));
});

test.each([
  ['fitTemperature maxIterations 0', () => fitTemperature(labels, scores, { maxIterations: 0 }), 'Expected positive integer for maxIterations but received 0'],
  ['fitLogisticRegression maxIterations 2.5', () => fitLogisticRegression(scores.map((s) => [s]), labels, { maxIterations: 2.5 }), 'Expected positive integer for maxIterations but received 2.5'],
  ['crossValidationSummary level 95', () => crossValidationSummary(rows, { level: 95 }), 'Expected level in (0, 1) but received 95'],
])('%s is refused', (_name, call, message) => {
  expect(call).toThrow(new RangeError(message));
});
