/** Minimal SVG plotting: linear scales, axes with grid, paths. Enough for the report, no dependencies. */

export interface Frame {
  /** Plot area inside the SVG (pixels). */
  left: number;
  top: number;
  width: number;
  height: number;
  xMin: number;
  xMax: number;
  yMin: number;
  yMax: number;
}

export function sx(f: Frame, v: number): number {
  return f.left + ((v - f.xMin) / (f.xMax - f.xMin || 1)) * f.width;
}

export function sy(f: Frame, v: number): number {
  return f.top + f.height - ((v - f.yMin) / (f.yMax - f.yMin || 1)) * f.height;
}

/** Two decimals are sub-pixel: keeps the page small for curves with thousands of points. */
export function r2(v: number): string {
  return (Math.round(v * 100) / 100).toString();
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** SVG path through the points (in data coordinates). */
export function pathD(f: Frame, xs: ArrayLike<number>, ys: ArrayLike<number>): string {
  const parts: string[] = [];
  for (let i = 0; i < xs.length; i++) parts.push(`${i === 0 ? 'M' : 'L'}${r2(sx(f, xs[i]))} ${r2(sy(f, ys[i]))}`);
  return parts.join('');
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function tickLabel(v: number): string {
  return Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toExponential(1) : Number(v.toPrecision(4)).toString();
}

/** Grid lines, axis lines, tick labels and axis titles. */
export function axes(
  f: Frame,
  xTitle: string,
  yTitle: string,
  xTicks = niceTicks(f.xMin, f.xMax),
  yTicks = niceTicks(f.yMin, f.yMax),
  xLabel: (v: number) => string = tickLabel,
): string {
  const bottom = f.top + f.height;
  const right = f.left + f.width;
  const out: string[] = ['<g class="axes">'];
  for (const t of xTicks) {
    const x = r2(sx(f, t));
    out.push(`<line class="grid" x1="${x}" y1="${f.top}" x2="${x}" y2="${bottom}"/>`);
    out.push(`<text class="tick" x="${x}" y="${bottom + 16}" text-anchor="middle">${xLabel(t)}</text>`);
  }
  for (const t of yTicks) {
    const y = r2(sy(f, t));
    out.push(`<line class="grid" x1="${f.left}" y1="${y}" x2="${right}" y2="${y}"/>`);
    out.push(`<text class="tick" x="${f.left - 6}" y="${y}" dy="0.32em" text-anchor="end">${tickLabel(t)}</text>`);
  }
  out.push(`<rect class="frame" x="${f.left}" y="${f.top}" width="${f.width}" height="${f.height}"/>`);
  out.push(`<text class="axis-title" x="${f.left + f.width / 2}" y="${bottom + 38}" text-anchor="middle">${escapeHtml(xTitle)}</text>`);
  out.push(
    `<text class="axis-title" transform="translate(${f.left - 42} ${f.top + f.height / 2}) rotate(-90)" text-anchor="middle">${escapeHtml(yTitle)}</text>`,
  );
  out.push('</g>');
  return out.join('');
}

/** Keep at most `max` points of a monotone curve (always the first and last) for drawing. */
export function thin(xs: number[], ys: number[], max = 3000): { xs: number[]; ys: number[] } {
  if (xs.length <= max) return { xs, ys };
  const step = (xs.length - 1) / (max - 1);
  const ox: number[] = [];
  const oy: number[] = [];
  for (let i = 0; i < max; i++) {
    const k = Math.round(i * step);
    ox.push(xs[k]);
    oy.push(ys[k]);
  }
  return { xs: ox, ys: oy };
}
