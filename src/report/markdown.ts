/** A short Markdown summary of an Evaluation (for PR comments and run notes; plots live in report.html). */
import type { OperatingPoint } from '../metrics';
import { Evaluation, operatingPointRows } from './evaluation';

function n(v: number | null | undefined, d = 3): string {
  return v === null || v === undefined ? '—' : v.toFixed(d);
}

function p(v: number | null | undefined): string {
  return v === null || v === undefined ? '—' : `${(100 * v).toFixed(1)}%`;
}

function row(name: string, o: OperatingPoint): string {
  return `| ${name} | ${o.threshold} | ${p(o.sensitivity)} | ${p(o.specificity)} | ${p(o.precision)} | ${p(o.npv)} | ${n(o.f1)} | ${o.tp} | ${o.fp} | ${o.tn} | ${o.fn} |`;
}

export function renderMarkdownReport(e: Evaluation): string {
  const level = `${Math.round(100 * e.options.level)}%`;
  const lines = [
    `# Melanoma classifier evaluation${e.source ? `: ${e.source}` : ''}`,
    '',
    `${e.counts.units} ${e.unit}s, ${e.counts.positives} melanoma (${(100 * e.counts.prevalence).toFixed(2)}%)${e.counts.patients !== null ? `, ${e.counts.patients} patients` : ''}.`,
    '',
    '| Metric | Value | CI |',
    '|---|---|---|',
    `| ROC AUC | ${n(e.auc.value)} | ${e.auc.delong ? `${n(e.auc.delong.ci[0])}–${n(e.auc.delong.ci[1])} (DeLong, ${level})` : '—'}${e.auc.bootstrap ? `; ${n(e.auc.bootstrap.ci[0])}–${n(e.auc.bootstrap.ci[1])} (bootstrap over ${e.auc.bootstrap.unit}s)` : ''} |`,
    `| Partial AUC, TPR ≥ ${e.partialAuc.minTpr} (max ${n(e.partialAuc.max, 1)}) | ${n(e.partialAuc.value)} | ${e.partialAuc.bootstrapCi ? `${n(e.partialAuc.bootstrapCi[0])}–${n(e.partialAuc.bootstrapCi[1])} (bootstrap)` : '—'} |`,
  ];
  if (e.calibration) {
    lines.push(`| ECE (${e.options.calibrationBins} equal-count bins) | ${n(e.calibration.ece)} | |`, `| Brier score | ${n(e.calibration.brier, 4)} | |`);
    if (e.calibration.temperatureScaling) {
      lines.push(`| Temperature (in-sample fit) | ${n(e.calibration.temperatureScaling.temperature, 3)} | ECE after ${n(e.calibration.temperatureScaling.eceAfter)} |`);
    }
  }
  if (e.crossValidation) {
    lines.push(`| Fold AUC, mean ± sd (${e.crossValidation.folds.length} folds) | ${n(e.crossValidation.meanAuc)} ± ${n(e.crossValidation.sdAuc)} | |`);
  }
  const o = e.operatingPoints;
  lines.push(
    '',
    '## Operating points',
    '',
    '| Rule | Threshold | Sensitivity | Specificity | PPV | NPV | F1 | TP | FP | TN | FN |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...operatingPointRows(e).map((r) => row(r.name, r.point)),
  );
  if (e.crossValidation) {
    lines.push('', '## Folds', '', `| Fold | ${e.unit === 'patient' ? 'Patients' : 'Images'} | Melanoma | AUC |`, '|---|---|---|---|');
    for (const f of e.crossValidation.folds) lines.push(`| ${f.fold} | ${f.n} | ${f.positives} | ${f.auc === null ? `— (${f.reason})` : n(f.auc)} |`);
  }
  const h = e.hardestCases;
  lines.push(
    '',
    '## Hardest cases',
    '',
    `Melanomas missed at sensitivity ≥ ${p(o.atTargetSensitivity.targetSensitivity)} (threshold ${h.threshold}): ${h.missedMelanomas.map((c) => `${c.id} (${n(c.score)})`).join(', ') || 'none'}.`,
    '',
    `False alarms at that threshold (benign, highest first): ${h.falseAlarms.map((c) => `${c.id} (${n(c.score)})`).join(', ') || 'none'}.`,
  );
  if (e.warnings.length) lines.push('', '## Warnings', '', ...e.warnings.map((w) => `- ${w}`));
  return lines.join('\n') + '\n';
}
