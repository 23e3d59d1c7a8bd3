/** Metrics for binary melanoma classifiers; definitions in shared/reference/metrics.md. */
export * from './auc';
export * from './delong';
export * from './bootstrap';
export * from './partial-auc';
export * from './operating-points';
export * from './calibration';
export * from './logistic';
export * from './cv';
export { normalCdf, normalQuantile, zForLevel } from './stats';
export { UndefinedMetricError } from './validate';
export type { RankedGroups } from './ranking';
