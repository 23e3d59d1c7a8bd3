/**
 * A self-contained HTML report of an Evaluation: inline CSS and hand-drawn SVG, no scripts and no
 * external resources, so it opens anywhere (also offline, also attached to an e-mail).
 */
import type { OperatingPoint } from '../metrics';
import { Evaluation, HARDEST_CASES, histogramPosition, operatingPointRows, RocJson } from './evaluation';
import { axes, escapeHtml, Frame, niceTicks, pathD, r2, sx, sy, thin } from './svg';

const FOLD_COLOURS = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f', '#bab0ac', '#e15759'];
const POOLED = '#111827';
const MELANOMA = '#b4232c';
const BENIGN = '#3f7cac';
const OP_COLOURS = { target: '#b4232c', youden: '#2f6f4f', threshold: '#6b7280' } as const;

function num(v: number | null | undefined, digits = 3): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits);
}

function pct(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '—' : `${(100 * v).toFixed(digits)}%`;
}

function ci(c: [number, number] | null | undefined, digits = 3): string {
  return c ? `${num(c[0], digits)}–${num(c[1], digits)}` : '—';
}

/** A threshold as people read it: 4 significant digits (the JSON keeps every digit). */
export function thresholdText(t: number): string {
  return Math.abs(t) >= 0.001 || t === 0 ? Number(t.toPrecision(4)).toString() : t.toExponential(2);
}

function svgOpen(id: string, width: number, height: number, title: string): string {
  return `<svg id="${id}" class="plot" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title)}" xmlns="http://www.w3.org/2000/svg"><title>${escapeHtml(title)}</title>`;
}

function legend(items: { label: string; colour: string; kind: 'line' | 'dash' | 'dot' | 'box'; width?: number }[], x: number, y: number): string {
  const rowH = 17;
  const w = Math.max(...items.map((i) => i.label.length)) * 6.6 + 34;
  const out = [`<g class="legend"><rect class="legend-bg" x="${x}" y="${y}" width="${r2(w)}" height="${items.length * rowH + 8}" rx="4"/>`];
  items.forEach((it, i) => {
    const cy = y + 12 + i * rowH;
    if (it.kind === 'dot') out.push(`<circle cx="${x + 14}" cy="${cy}" r="4.5" fill="${it.colour}" stroke="#fff" stroke-width="1.2"/>`);
    else if (it.kind === 'box') out.push(`<rect x="${x + 7}" y="${cy - 5}" width="14" height="10" fill="${it.colour}" fill-opacity="0.75"/>`);
    else {
      out.push(
        `<line x1="${x + 6}" y1="${cy}" x2="${x + 22}" y2="${cy}" stroke="${it.colour}" stroke-width="${it.width ?? 2}"${it.kind === 'dash' ? ' stroke-dasharray="4 3"' : ''}/>`,
      );
    }
    out.push(`<text class="legend-text" x="${x + 28}" y="${cy}" dy="0.32em">${escapeHtml(it.label)}</text>`);
  });
  out.push('</g>');
  return out.join('');
}

function rocPath(f: Frame, roc: RocJson): string {
  const t = thin(roc.fpr, roc.tpr);
  return pathD(f, t.xs, t.ys);
}

/** Region under the pooled curve and above the TPR floor: what the partial AUC measures. */
function pAucRegion(f: Frame, roc: RocJson, minTpr: number, id: string): string {
  const k = roc.tpr.findIndex((t) => t >= minTpr);
  if (k <= 0) return '';
  const x0 = roc.fpr[k - 1] + ((minTpr - roc.tpr[k - 1]) * (roc.fpr[k] - roc.fpr[k - 1])) / (roc.tpr[k] - roc.tpr[k - 1]);
  const t = thin(roc.fpr.slice(k), roc.tpr.slice(k));
  const xs = [x0, ...t.xs, 1];
  const ys = [minTpr, ...t.ys, minTpr];
  return `<path id="${id}" d="${pathD(f, xs, ys)}Z" fill="${MELANOMA}" fill-opacity="0.12" stroke="none"/>`;
}

/**
 * ROC curves. `zoom` draws the clinically relevant corner (high sensitivity, low FPR) at a larger
 * scale: with AUCs near 0.95 the full plot hides the differences that matter.
 */
function rocPlot(e: Evaluation, zoom = false): string {
  const id = zoom ? 'roc-zoom' : 'roc-plot';
  const pre = zoom ? 'zoom-' : '';
  const ts = e.operatingPoints.atTargetSensitivity;
  const xMax = zoom ? [0.1, 0.2, 0.3, 0.5, 0.75, 1].find((m) => m >= 1.25 * (1 - (ts.specificity ?? 0))) ?? 1 : 1;
  const yMin = zoom ? Math.max(0, Math.round((e.partialAuc.minTpr - 0.2) * 10) / 10) : 0;
  const W = 480, H = zoom ? 340 : 470;
  const f: Frame = { left: 58, top: 16, width: 400, height: zoom ? 270 : 400, xMin: 0, xMax, yMin, yMax: 1 };
  const out = [
    svgOpen(id, W, H, zoom ? 'ROC curves, high-sensitivity region' : e.crossValidation ? 'ROC curves: pooled out-of-fold and per fold' : 'ROC curve'),
    axes(f, 'False-positive rate (1 − specificity)', 'True-positive rate (sensitivity)', niceTicks(0, xMax, 5), niceTicks(yMin, 1, zoom ? 4 : 5)),
  ];
  if (zoom) out.push(`<defs><clipPath id="roc-zoom-clip"><rect x="${f.left}" y="${f.top}" width="${f.width}" height="${f.height}"/></clipPath></defs><g clip-path="url(#roc-zoom-clip)">`);
  out.push(pAucRegion(f, e.roc, e.partialAuc.minTpr, `${pre}pauc-region`));
  out.push(
    `<line id="${pre}roc-floor" x1="${sx(f, 0)}" y1="${r2(sy(f, e.partialAuc.minTpr))}" x2="${sx(f, xMax)}" y2="${r2(sy(f, e.partialAuc.minTpr))}" stroke="${MELANOMA}" stroke-opacity="0.5" stroke-dasharray="2 3"/>`,
  );
  out.push(`<line id="${pre}roc-chance" x1="${sx(f, 0)}" y1="${sy(f, 0)}" x2="${r2(sx(f, 1))}" y2="${r2(sy(f, 1))}" stroke="#9ca3af" stroke-dasharray="5 4"/>`);
  const items: Parameters<typeof legend>[0] = [];
  const folds = e.crossValidation?.folds ?? [];
  folds.forEach((fold, i) => {
    if (!fold.roc) return;
    const c = FOLD_COLOURS[i % FOLD_COLOURS.length];
    out.push(`<path class="roc-fold" data-fold="${escapeHtml(fold.fold)}" d="${rocPath(f, fold.roc)}" fill="none" stroke="${c}" stroke-width="1.4" stroke-opacity="0.85"/>`);
    items.push({ label: `Fold ${fold.fold}  AUC ${num(fold.auc)}`, colour: c, kind: 'line', width: 1.4 });
  });
  out.push(`<path id="${pre}roc-pooled" d="${rocPath(f, e.roc)}" fill="none" stroke="${POOLED}" stroke-width="2.6"/>`);
  items.unshift({ label: `${folds.length ? 'Pooled out-of-fold' : 'All predictions'}  AUC ${num(e.auc.value)}`, colour: POOLED, kind: 'line', width: 2.6 });
  const ops: [keyof typeof OP_COLOURS, OperatingPoint, string][] = [
    ['target', ts, `Sensitivity ≥ ${pct(ts.targetSensitivity, 0)}`],
    ['youden', e.operatingPoints.youden, 'Youden optimum'],
    ['threshold', e.operatingPoints.atThreshold, `Threshold ${thresholdText(e.operatingPoints.atThreshold.threshold)}`],
  ];
  for (const [key, p, label] of ops) {
    if (p.sensitivity === null || p.specificity === null) continue;
    out.push(
      `<circle id="${pre}op-${key}" class="op-marker" cx="${r2(sx(f, 1 - p.specificity))}" cy="${r2(sy(f, p.sensitivity))}" r="5.5" fill="${OP_COLOURS[key]}" stroke="#fff" stroke-width="1.5"><title>${escapeHtml(label)}: sensitivity ${pct(p.sensitivity)}, specificity ${pct(p.specificity)}</title></circle>`,
    );
    items.push({ label, colour: OP_COLOURS[key], kind: 'dot' });
  }
  if (zoom) out.push('</g>');
  else {
    items.push({ label: `Partial AUC region (TPR ≥ ${e.partialAuc.minTpr})`, colour: '#f3c7c9', kind: 'box' });
    const legendX = f.left + f.width - (Math.max(...items.map((i) => i.label.length)) * 6.6 + 34) - 8;
    out.push(legend(items, Math.max(f.left + 8, legendX), f.top + f.height - items.length * 17 - 16));
  }
  out.push('</svg>');
  return out.join('');
}

function niceMax(v: number): number {
  for (const m of [0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1]) if (v <= m) return m;
  return 1;
}

function reliabilityPlot(e: Evaluation): string {
  const cal = e.calibration!;
  const after = cal.temperatureScaling;
  const all = [...cal.bins, ...(after ? after.bins : [])];
  const m = niceMax(Math.max(...all.map((b) => Math.max(b.meanPredicted, b.observedFrequency)), 0.01) * 1.05);
  const W = 480, H = 470;
  const f: Frame = { left: 58, top: 16, width: 400, height: 400, xMin: 0, xMax: m, yMin: 0, yMax: m };
  const out = [svgOpen('reliability-plot', W, H, 'Reliability diagram'), axes(f, `Mean predicted probability (bins of equal count)`, 'Observed melanoma frequency')];
  out.push(`<line id="reliability-diagonal" x1="${sx(f, 0)}" y1="${sy(f, 0)}" x2="${sx(f, m)}" y2="${sy(f, m)}" stroke="#9ca3af" stroke-dasharray="5 4"/>`);
  const maxCount = Math.max(...all.map((b) => b.count));
  const series = (id: string, bins: typeof cal.bins, colour: string): string => {
    const pts = bins.map((b) => `<circle class="reliability-point" cx="${r2(sx(f, b.meanPredicted))}" cy="${r2(sy(f, b.observedFrequency))}" r="${r2(3 + 4 * Math.sqrt(b.count / maxCount))}" fill="${colour}" fill-opacity="0.85" stroke="#fff"><title>${b.count} ${e.unit}s, predicted ${num(b.meanPredicted)}, observed ${num(b.observedFrequency)}</title></circle>`);
    return `<g id="${id}"><path d="${pathD(f, bins.map((b) => b.meanPredicted), bins.map((b) => b.observedFrequency))}" fill="none" stroke="${colour}" stroke-width="1.8"/>${pts.join('')}</g>`;
  };
  out.push(series('reliability-before', cal.bins, MELANOMA));
  const items: Parameters<typeof legend>[0] = [{ label: `As predicted  ECE ${num(cal.ece)}`, colour: MELANOMA, kind: 'line' }];
  if (after) {
    out.push(series('reliability-after', after.bins, '#2f6f4f'));
    items.push({ label: `Temperature-scaled (T = ${num(after.temperature, 2)})  ECE ${num(after.eceAfter)}`, colour: '#2f6f4f', kind: 'line' });
  }
  items.push({ label: 'Perfect calibration', colour: '#9ca3af', kind: 'dash' });
  out.push(legend(items, f.left + 10, f.top + 10));
  out.push('</svg>');
  return out.join('');
}

function histogramPlot(e: Evaluation): string {
  const h = e.histogram;
  const nB = h.benign.reduce((a, b) => a + b, 0) || 1;
  const nM = h.melanoma.reduce((a, b) => a + b, 0) || 1;
  const fb = h.benign.map((c) => c / nB);
  const fm = h.melanoma.map((c) => c / nM);
  const W = 480, H = 366;
  const yMax = niceMax(Math.max(...fb, ...fm) * 1.05);
  const f: Frame = { left: 58, top: 52, width: 400, height: 260, xMin: h.edges[0], xMax: h.edges[h.edges.length - 1], yMin: 0, yMax };
  const isProb = e.options.scoreScale === 'probability';
  // Probability ticks at round values, placed on the log-odds axis.
  const xTicks: number[] = [];
  if (isProb) {
    for (const p of [0.5, 0.2, 0.8, 0.05, 0.95, 0.01, 0.99, 1e-3, 0.999, 1e-4, 0.9999, 1e-5, 0.99999]) {
      const x = histogramPosition(p, 'probability');
      // Most informative ticks first; skip one whose label would collide with a kept one.
      if (x >= f.xMin && x <= f.xMax && xTicks.every((t) => Math.abs(sx(f, t) - sx(f, x)) >= 38)) xTicks.push(x);
    }
    xTicks.sort((a, b) => a - b);
  } else xTicks.push(...niceTicks(f.xMin, f.xMax, 6));
  const probLabel = (x: number): string => {
    const p = 1 / (1 + Math.exp(-x));
    return p <= 0.5 ? String(Number(p.toPrecision(1))) : String(1 - Number((1 - p).toPrecision(1)));
  };
  const out = [
    svgOpen('score-histogram', W, H, 'Score distribution per class'),
    axes(f, isProb ? 'Predicted probability of melanoma (log-odds axis)' : 'Score (logit)', `Fraction of class (per ${e.unit})`, xTicks, undefined, isProb ? probLabel : undefined),
  ];
  for (let i = 0; i < fb.length; i++) {
    const x0 = sx(f, h.edges[i]);
    const x1 = sx(f, h.edges[i + 1]);
    const w = (x1 - x0) / 2 - 0.5;
    out.push(
      `<rect class="hist-bar-benign" x="${r2(x0 + 0.5)}" y="${r2(sy(f, fb[i]))}" width="${r2(w)}" height="${r2(sy(f, 0) - sy(f, fb[i]))}" fill="${BENIGN}" fill-opacity="0.8"><title>benign: ${h.benign[i]} in [${num(h.edges[i], 2)}, ${num(h.edges[i + 1], 2)})</title></rect>`,
      `<rect class="hist-bar-melanoma" x="${r2(x0 + 0.5 + w)}" y="${r2(sy(f, fm[i]))}" width="${r2(w)}" height="${r2(sy(f, 0) - sy(f, fm[i]))}" fill="${MELANOMA}" fill-opacity="0.8"><title>melanoma: ${h.melanoma[i]} in [${num(h.edges[i], 2)}, ${num(h.edges[i + 1], 2)})</title></rect>`,
    );
  }
  const items: Parameters<typeof legend>[0] = [
    { label: `Benign (n = ${nB})`, colour: BENIGN, kind: 'box' },
    { label: `Melanoma (n = ${nM})`, colour: MELANOMA, kind: 'box' },
  ];
  const lines: [string, OperatingPoint, string, string][] = [
    ['target', e.operatingPoints.atTargetSensitivity, OP_COLOURS.target, `Threshold for sensitivity ≥ ${pct(e.operatingPoints.atTargetSensitivity.targetSensitivity, 0)}`],
    ['youden', e.operatingPoints.youden, OP_COLOURS.youden, 'Youden threshold'],
  ];
  for (const [key, p, colour, label] of lines) {
    const pos = histogramPosition(p.threshold, e.options.scoreScale);
    if (pos < f.xMin || pos > f.xMax) continue;
    const x = r2(sx(f, pos));
    out.push(`<line id="hist-threshold-${key}" x1="${x}" y1="${f.top}" x2="${x}" y2="${f.top + f.height}" stroke="${colour}" stroke-width="1.6" stroke-dasharray="5 3"/>`);
    items.push({ label, colour, kind: 'dash' });
  }
  out.push(legendRow(items, f.left, 14));
  out.push('</svg>');
  return out.join('');
}

/** Legend laid out in rows above a plot, so it never hides data. */
function legendRow(items: Parameters<typeof legend>[0], left: number, top: number, width = 400): string {
  const out = ['<g class="legend">'];
  let x = left;
  let y = top;
  for (const it of items) {
    const w = it.label.length * 6.4 + 34;
    if (x + w > left + width && x > left) {
      x = left;
      y += 17;
    }
    if (it.kind === 'box') out.push(`<rect x="${r2(x + 1)}" y="${y - 5}" width="14" height="10" fill="${it.colour}" fill-opacity="0.8"/>`);
    else out.push(`<line x1="${r2(x)}" y1="${y}" x2="${r2(x + 16)}" y2="${y}" stroke="${it.colour}" stroke-width="1.8"${it.kind === 'dash' ? ' stroke-dasharray="4 3"' : ''}/>`);
    out.push(`<text class="legend-text" x="${r2(x + 21)}" y="${y}" dy="0.32em">${escapeHtml(it.label)}</text>`);
    x += w;
  }
  out.push('</g>');
  return out.join('');
}

function opRow(name: string, p: OperatingPoint, note: string): string {
  // Number needed to biopsy: excisions per melanoma found at this operating point.
  const nnb = p.tp > 0 ? (p.tp + p.fp) / p.tp : null;
  return `<tr><th scope="row">${escapeHtml(name)}<div class="note">${escapeHtml(note)}</div></th><td class="mono">${thresholdText(p.threshold)}</td><td>${pct(p.sensitivity)}</td><td>${pct(p.specificity)}</td><td>${pct(p.precision)}</td><td>${pct(p.npv)}</td><td>${num(p.f1)}</td><td>${num(nnb, 1)}</td><td class="mono">${p.tp} / ${p.fp} / ${p.tn} / ${p.fn}</td></tr>`;
}

function hardestCasesSection(e: Evaluation): string {
  const h = e.hardestCases;
  const what = e.unit === 'patient' ? 'Patient' : 'Image';
  const table = (id: string, title: string, cases: Evaluation['hardestCases']['missedMelanomas'], empty: string) =>
    `<div><h3>${escapeHtml(title)}</h3>${
      cases.length
        ? `<table id="${id}"><thead><tr><th scope="col" style="text-align:left">${what}</th><th>Score</th>${e.crossValidation ? '<th>Fold</th>' : ''}</tr></thead><tbody>${cases
            .map((c) => `<tr><th scope="row" class="mono">${escapeHtml(c.id)}</th><td class="mono">${thresholdText(c.score)}</td>${e.crossValidation ? `<td>${escapeHtml(c.fold ?? '—')}</td>` : ''}</tr>`)
            .join('')}</tbody></table>`
        : `<p class="note">${escapeHtml(empty)}</p>`
    }</div>`;
  return `<div class="grid2">${table('missed-melanomas', `Melanomas missed at sensitivity ≥ ${pct(e.operatingPoints.atTargetSensitivity.targetSensitivity, 0)} (threshold ${thresholdText(h.threshold)})`, h.missedMelanomas, 'None: every melanoma scored at or above the threshold.')}
${table('false-alarms', `False alarms at that threshold (benign, scored ≥ ${thresholdText(h.threshold)})`, h.falseAlarms, 'None: every benign lesion scored below the threshold.')}</div>
<p class="explain">Lowest-scored missed melanomas first, then the most confident false alarms (at most ${HARDEST_CASES} each): the ${e.unit === 'patient' ? 'patients' : 'images'} to look at before trusting the numbers above. Open them from your data by name.</p>`;
}

function card(id: string, title: string, value: string, lines: string[]): string {
  return `<section class="card" id="${id}"><h3>${escapeHtml(title)}</h3><div class="value">${value}</div>${lines.map((l) => `<div class="sub">${l}</div>`).join('')}</section>`;
}

const CSS = `
:root{--ink:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f7f7f5;--card:#fff;--accent:#b4232c}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1060px;margin:0 auto;padding:28px 24px 48px}
header h1{font-size:24px;margin:0 0 4px;letter-spacing:-.01em}header .meta{color:var(--muted)}
h2{font-size:17px;margin:34px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:12px;margin-top:18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px}
.card h3{margin:0;font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600}
.card .value{font-size:30px;font-weight:650;margin:4px 0 2px;font-variant-numeric:tabular-nums}
.card .value small{font-size:14px;color:var(--muted);font-weight:500}
.card .sub{color:var(--muted);font-size:13px;font-variant-numeric:tabular-nums}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px;align-items:start}
.scroll{overflow-x:auto}
.stack{display:grid;gap:16px}
figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px}
figcaption{color:var(--muted);font-size:13px;margin-top:6px;max-width:470px}
.plot{display:block;max-width:100%;height:auto}
.plot .grid{stroke:#eef0f2}.plot .frame{fill:none;stroke:#9ca3af}
.plot .tick{font-size:11px;fill:#6b7280}.plot .axis-title{font-size:12px;fill:#374151}
.plot .legend-bg{fill:#fff;fill-opacity:.92;stroke:#e5e7eb}.plot .legend-text{font-size:11.5px;fill:#1f2937}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);border-radius:10px;overflow:hidden;font-variant-numeric:tabular-nums}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
thead th{background:#f3f4f6;font-size:12px;color:#374151;font-weight:600}
tbody th{text-align:left;font-weight:600;white-space:normal;min-width:190px}.note{font-weight:400;color:var(--muted);font-size:12px}
td.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.bar{display:inline-block;height:8px;background:#4e79a7;border-radius:4px;vertical-align:middle;margin-left:8px}
.warnings{background:#fff8e6;border:1px solid #f3d27a;border-radius:10px;padding:10px 16px;margin-top:16px}
.warnings li{margin:3px 0}
.explain{color:var(--muted);font-size:13px;max-width:860px}
footer{margin-top:40px;color:var(--muted);font-size:12px}
@media print{body{background:#fff}.card,figure,table{break-inside:avoid}}
`;

/** Render the report page for an evaluation. */
export function renderHtmlReport(e: Evaluation): string {
  const title = `Melanoma classifier evaluation${e.source ? ` — ${e.source}` : ''}`;
  const unitWord = e.unit === 'patient' ? `patient (score = ${e.options.patientAggregation} over a patient’s images)` : 'image';
  const ts = e.operatingPoints.atTargetSensitivity;
  const cv = e.crossValidation;
  const boot = e.auc.bootstrap;

  const cards = [
    card('summary-auc', 'ROC AUC', num(e.auc.value), [
      e.auc.delong ? `${Math.round(100 * e.options.level)}% CI ${ci(e.auc.delong.ci)} (DeLong)` : 'no DeLong CI: needs ≥ 2 melanoma and ≥ 2 benign',
      boot ? `${ci(boot.ci)} (bootstrap, ${boot.validReplicates} × ${boot.unit}s)` : '',
    ]),
    card('summary-pauc', `Partial AUC, TPR ≥ ${e.partialAuc.minTpr}`, `${num(e.partialAuc.value)} <small>of ${num(e.partialAuc.max, 1)}</small>`, [
      ...(e.partialAuc.bootstrapCi ? [`${Math.round(100 * e.options.level)}% CI ${ci(e.partialAuc.bootstrapCi)} (bootstrap)`] : []),
      'ISIC 2024 primary metric',
    ]),
    card('summary-sensitivity', `At sensitivity ≥ ${pct(ts.targetSensitivity, 0)}`, `${pct(ts.specificity)} <small>specificity</small>`, [
      `sensitivity ${pct(ts.sensitivity)} (${ts.tp}/${ts.tp + ts.fn} melanomas found)`,
      `threshold ${thresholdText(ts.threshold)}; ${ts.tp > 0 ? num((ts.tp + ts.fp) / ts.tp, 1) : '—'} excisions per melanoma`,
    ]),
    e.calibration
      ? card('summary-calibration', 'Calibration', `${num(e.calibration.ece)} <small>ECE</small>`, [
          `Brier ${num(e.calibration.brier, 4)}`,
          e.calibration.temperatureScaling
            ? `T = ${num(e.calibration.temperatureScaling.temperature, 2)} → ECE ${num(e.calibration.temperatureScaling.eceAfter)}`
            : escapeHtml(e.calibration.temperatureReason ?? ''),
        ])
      : '',
    card('summary-data', 'Data', `${e.counts.units.toLocaleString('en-US')} <small>${e.unit}s</small>`, [
      `${e.counts.positives.toLocaleString('en-US')} melanoma (${pct(e.counts.prevalence, 2)})`,
      e.counts.patients !== null ? `${e.counts.patients.toLocaleString('en-US')} patients, ${e.counts.rows.toLocaleString('en-US')} images` : `${e.counts.rows.toLocaleString('en-US')} rows, no patient ids`,
    ]),
    cv
      ? card('summary-cv', `Cross-validation, ${cv.folds.length} folds`, `${num(cv.meanAuc)} <small>± ${num(cv.sdAuc)}</small>`, [
          'mean ± sd of fold AUCs',
          `pooled out-of-fold ${num(cv.pooledAuc)} (${ci(cv.pooledDelong?.ci)})`,
        ])
      : '',
  ].join('');

  const warnings = e.warnings.length
    ? `<div class="warnings" id="warnings"><strong>Check before reading on</strong><ul>${e.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul></div>`
    : '';

  const opTable = `<div class="scroll"><table id="operating-points"><thead><tr><th scope="col" style="text-align:left">Operating point</th><th>Threshold</th><th>Sensitivity</th><th>Specificity</th><th>PPV</th><th>NPV</th><th>F1</th><th title="(TP + FP) / TP: number needed to biopsy">Excisions per melanoma</th><th>TP / FP / TN / FN</th></tr></thead><tbody>
${operatingPointRows(e).map((r) => opRow(r.name, r.point, r.note)).join('\n')}
</tbody></table></div>`;

  const maxAuc = 1;
  const foldTable = cv
    ? `<h2>Cross-validation</h2><table id="fold-table"><thead><tr><th scope="col" style="text-align:left">Fold</th><th>${e.unit === 'patient' ? 'Patients' : 'Images'}</th><th>Melanoma</th><th style="text-align:left">AUC</th></tr></thead><tbody>${cv.folds
        .map(
          (f, i) =>
            `<tr><th scope="row"><span style="color:${FOLD_COLOURS[i % FOLD_COLOURS.length]}">●</span> ${escapeHtml(f.fold)}</th><td>${f.n.toLocaleString('en-US')}</td><td>${f.positives.toLocaleString('en-US')}</td><td style="text-align:left">${f.auc === null ? `— <span class="note">${escapeHtml(f.reason ?? '')}</span>` : `${num(f.auc)}<span class="bar" style="width:${r2(Math.max(0, (f.auc - 0.5) / (maxAuc - 0.5)) * 220)}px;background:${FOLD_COLOURS[i % FOLD_COLOURS.length]}"></span>`}</td></tr>`,
        )
        .join('')}<tr><th scope="row">Mean ± sd</th><td></td><td></td><td style="text-align:left">${num(cv.meanAuc)} ± ${num(cv.sdAuc)}</td></tr><tr><th scope="row">Pooled out-of-fold</th><td>${e.counts.units.toLocaleString('en-US')}</td><td>${e.counts.positives.toLocaleString('en-US')}</td><td style="text-align:left">${num(cv.pooledAuc)} <span class="note">${Math.round(100 * e.options.level)}% CI ${ci(cv.pooledDelong?.ci)}</span></td></tr></tbody></table>
<p class="explain">Bars start at AUC 0.5 (chance). Fold AUCs vary with the few melanomas per fold; the pooled out-of-fold AUC uses every prediction once.</p>`
    : '';

  const calibrationSection = e.calibration
    ? `<figure>${reliabilityPlot(e)}<figcaption>Each point is a bin of equal size; points below the diagonal mean the model over-estimates melanoma risk (typical after class-weighted training). Axes are zoomed to where the bins lie.${
        e.calibration.temperatureScaling ? ` Temperature T fitted on these predictions (in-sample; fit it on validation data before use).` : ''
      }${
        e.calibration.temperatureScaling && e.calibration.temperatureScaling.eceAfter > e.calibration.ece
          ? ' Here scaling lowers the NLL but not the ECE: one temperature cannot remove a constant shift of the logits, such as the log(pos_weight) offset of class-weighted training.'
          : ''
      }</figcaption></figure>`
    : `<figure><p>${escapeHtml(e.calibrationReason ?? 'Calibration not available')}</p></figure>`;

  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title><style>${CSS}</style></head>
<body><main>
<header><h1>Melanoma classifier evaluation</h1>
<div class="meta">${e.source ? `<span class="mono">${escapeHtml(e.source)}</span> · ` : ''}per ${unitWord} · ${e.counts.units.toLocaleString('en-US')} evaluated, ${e.counts.positives.toLocaleString('en-US')} melanoma · generated ${escapeHtml(e.createdAt.replace('T', ' ').slice(0, 16))} UTC</div></header>
${warnings}
<div class="cards" id="summary">${cards}</div>
<h2>Discrimination</h2>
<div class="grid2"><figure>${rocPlot(e)}<figcaption>ROC curve of ${cv ? 'all out-of-fold predictions pooled (black) and of each fold' : 'all predictions'}. The shaded band is the partial AUC above ${pct(e.partialAuc.minTpr, 0)} sensitivity (ISIC 2024 metric); dots mark the operating points below.</figcaption></figure>
<div class="stack"><figure>${histogramPlot(e)}<figcaption>Distribution of scores for benign and melanoma ${e.unit}s, each normalised to its own class (melanoma is rare: ${pct(e.counts.prevalence, 2)}). Dashed lines: the thresholds of the operating points.</figcaption></figure>
<figure>${rocPlot(e, true)}<figcaption>The high-sensitivity corner of the ROC plot enlarged (same colours), where a screening threshold would be set.</figcaption></figure></div></div>
<h2>Operating points</h2>
${opTable}
<p class="explain">PPV and NPV hold at this data set’s melanoma prevalence (${pct(e.counts.prevalence, 2)}); they change with prevalence, sensitivity and specificity do not. “Excisions per melanoma” is (TP + FP) / TP, the number needed to biopsy.</p>
<h2>Calibration</h2>
<div class="grid2">${calibrationSection}
<table id="calibration-table"><thead><tr><th>Bin</th><th>${e.unit === 'patient' ? 'Patients' : 'Images'}</th><th>Predicted</th><th>Observed</th></tr></thead><tbody>${(e.calibration?.bins ?? [])
    .map((b, i) => `<tr><td>${i + 1}</td><td>${b.count.toLocaleString('en-US')}</td><td>${num(b.meanPredicted)}</td><td>${num(b.observedFrequency)}</td></tr>`)
    .join('')}</tbody></table></div>
<h2>Hardest cases</h2>
${hardestCasesSection(e)}
${foldTable}
<footer>AUC as in scikit-learn (ties count ½). DeLong CI by the fast midrank algorithm (Sun &amp; Xu 2014)${boot ? `; bootstrap: ${boot.replicates} replicates resampling ${boot.unit}s, seed ${boot.seed}, percentile interval` : ''}. Partial AUC: area under the ROC curve above ${e.partialAuc.minTpr} TPR (range 0–${num(e.partialAuc.max, 1)}). ECE over ${e.options.calibrationBins} equal-count bins. Machine-readable results: evaluation.json (schema ${escapeHtml(e.schema)}).</footer>
</main></body></html>
`;
}
