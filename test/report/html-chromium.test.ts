/**
 * The report rendered by a real browser: Debian's headless Chromium loads report.html and the
 * test checks that the plots are there and laid out (sizes, path lengths, element counts).
 * Skips, saying why, where /usr/bin/chromium is absent (CI installs it: apt-get install -y chromium).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { evaluatePredictions, Evaluation } from '../../src/report/evaluation';
import { renderHtmlReport } from '../../src/report/html';
import { parsePredictionsCsv } from '../../src/report/predictions-csv';
import { syntheticPredictionsCsv } from './fixtures';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = fs.existsSync(CHROMIUM);

const evaluation: Evaluation = evaluatePredictions(parsePredictionsCsv(syntheticPredictionsCsv({ patients: 400, seed: 9 })), {
  bootstrap: 100,
  source: 'synthetic <preds>.csv',
});
const html = renderHtmlReport(evaluation);

describe('report.html as text', () => {
  test('self-contained: no scripts, no external resources', () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/<link /i);
    const urls = html.match(/(?:https?:)?\/\/[^\s"'<)]+/g) ?? [];
    expect(urls.filter((u) => u !== 'http://www.w3.org/2000/svg')).toEqual([]);
  });
  test('user text is escaped', () => {
    expect(html).toContain('synthetic &lt;preds&gt;.csv');
    expect(html).not.toContain('<preds>');
  });
});

/** Test-only probe appended to a copy of the page: measures what the browser laid out. */
const PROBE = `<script>
(function () {
  var result;
  try { result = measure(); } catch (err) { result = { probeError: String(err && err.stack || err) }; }
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(result); document.body.appendChild(pre);
})();
function measure() {
  function box(sel) { var el = document.querySelector(sel); if (!el) return null; var r = el.getBoundingClientRect(); return { w: r.width, h: r.height }; }
  function inside(marker, frameSel) {
    var m = marker.getBoundingClientRect(), f = document.querySelector(frameSel).getBoundingClientRect();
    var cx = m.left + m.width / 2, cy = m.top + m.height / 2;
    return cx >= f.left - 0.5 && cx <= f.right + 0.5 && cy >= f.top - 0.5 && cy <= f.bottom + 0.5;
  }
  var hist = Array.prototype.slice.call(document.querySelectorAll('#score-histogram rect.hist-bar-benign, #score-histogram rect.hist-bar-melanoma'));
  return {
    rocBox: box('#roc-plot'), zoomBox: box('#roc-zoom'), reliabilityBox: box('#reliability-plot'), histogramBox: box('#score-histogram'),
    pooledLength: document.querySelector('#roc-pooled').getTotalLength(),
    foldPaths: document.querySelectorAll('#roc-plot path.roc-fold').length,
    zoomFoldPaths: document.querySelectorAll('#roc-zoom path.roc-fold').length,
    zoomPooledClipped: document.querySelector('#zoom-roc-pooled').closest('g[clip-path]') !== null,
    foldLengths: Array.prototype.map.call(document.querySelectorAll('#roc-plot path.roc-fold'), function (p) { return p.getTotalLength(); }),
    paucArea: box('#pauc-region'),
    opMarkers: document.querySelectorAll('#roc-plot circle.op-marker').length,
    opInside: Array.prototype.every.call(document.querySelectorAll('#roc-plot circle.op-marker'), function (c) { return inside(c, '#roc-plot rect.frame'); }),
    reliabilityPoints: document.querySelectorAll('#reliability-before circle.reliability-point').length,
    reliabilityAfter: document.querySelectorAll('#reliability-after circle.reliability-point').length,
    histBars: hist.length,
    histVisible: hist.filter(function (r) { return r.getBoundingClientRect().height > 0.5; }).length,
    opRows: document.querySelectorAll('#operating-points tbody tr').length,
    foldRows: document.querySelectorAll('#fold-table tbody tr').length,
    missedRows: document.querySelectorAll('#missed-melanomas tbody tr').length,
    alarmRows: document.querySelectorAll('#false-alarms tbody tr').length,
    cards: document.querySelectorAll('#summary .card').length
  };
}
</script>`;

function chromium(args: string[], userDir: string): string {
  return execFileSync(
    CHROMIUM,
    ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', `--user-data-dir=${userDir}`, ...args],
    { encoding: 'utf8', timeout: 90000, stdio: ['ignore', 'pipe', 'ignore'] },
  );
}

const describeBrowser = hasChromium ? describe : describe.skip;
if (!hasChromium) {
  console.warn(`Skipping the headless-browser report test: ${CHROMIUM} not found (install it with: apt-get install -y chromium)`);
}

describeBrowser(`report.html in headless Chromium (${hasChromium ? CHROMIUM : `skipped: ${CHROMIUM} not installed; apt-get install -y chromium`})`, () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'report-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('plots are present and laid out', () => {
    const page = path.join(dir, 'probe.html');
    fs.writeFileSync(page, html.replace('</body>', `${PROBE}</body>`));
    const dom = chromium(['--dump-dom', `file://${page}`], path.join(dir, 'profile1'));
    const m = /<pre id="probe">([^<]*)<\/pre>/.exec(dom);
    expect(m).not.toBeNull();
    const r = JSON.parse(m![1].replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'));
    expect(r.probeError).toBeUndefined();
    const folds = evaluation.crossValidation!.folds.length;
    expect(r.zoomFoldPaths).toBe(folds);
    expect(r.zoomPooledClipped).toBe(true);
    for (const b of [r.rocBox, r.zoomBox, r.reliabilityBox, r.histogramBox]) {
      expect(b.w).toBeGreaterThan(300);
      expect(b.h).toBeGreaterThan(250);
    }
    // A curve from (0,0) to (1,1) on a 400 px square is at least the diagonal long.
    expect(r.pooledLength).toBeGreaterThan(400 * Math.SQRT2 - 1);
    expect(r.foldPaths).toBe(folds);
    for (const len of r.foldLengths) expect(len).toBeGreaterThan(400 * Math.SQRT2 - 1);
    expect(r.paucArea.w * r.paucArea.h).toBeGreaterThan(100);
    expect(r.opMarkers).toBe(3);
    expect(r.opInside).toBe(true);
    expect(r.reliabilityPoints).toBe(evaluation.calibration!.bins.length);
    expect(r.reliabilityAfter).toBe(evaluation.calibration!.temperatureScaling!.bins.length);
    expect(r.histBars).toBe(2 * evaluation.histogram.benign.length);
    expect(r.histVisible).toBe(evaluation.histogram.benign.filter((c) => c > 0).length + evaluation.histogram.melanoma.filter((c) => c > 0).length);
    // Target sensitivity 95%, the table's 80% and 90%, Youden, the fixed threshold.
    expect(r.opRows).toBe(5);
    expect(r.foldRows).toBe(folds + 2);
    expect(r.missedRows).toBe(evaluation.hardestCases.missedMelanomas.length);
    expect(r.alarmRows).toBe(10);
    expect(r.cards).toBe(6);
  });

  test('the unmodified report renders to a screenshot', () => {
    const page = path.join(dir, 'report.html');
    const png = path.join(dir, 'report.png');
    fs.writeFileSync(page, html);
    chromium(['--hide-scrollbars', '--window-size=1100,2400', `--screenshot=${png}`, `file://${page}`], path.join(dir, 'profile2'));
    const bytes = fs.readFileSync(png);
    expect(bytes.subarray(1, 4).toString('latin1')).toBe('PNG');
    expect(bytes.readUInt32BE(16)).toBe(1100); // IHDR width
    expect(bytes.length).toBeGreaterThan(50000); // a blank page compresses to a few kB
  });
});
