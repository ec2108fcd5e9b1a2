// Line charts as self-contained SVG text, no dependency: one function serves the three charts of
// the report (latency distribution, throughput against concurrency, writer backlog over time).

export interface Series {
  name: string;
  points: [x: number, y: number][];
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
}

const W = 760;
const H = 420;
const PAD = { left: 70, right: 20, top: 40, bottom: 90 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf'];

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Tick values: powers of ten on a log axis, else about five round steps. */
function ticks(lo: number, hi: number, log: boolean): number[] {
  if (log) {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
    return out;
  }
  const span = hi - lo || 1;
  const step0 = 10 ** Math.floor(Math.log10(span / 5));
  const step = [1, 2, 5, 10].map((m) => m * step0).find((s) => span / s <= 6) ?? step0 * 10;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step)
    out.push(Number(v.toPrecision(6)));
  return out;
}

const label = (v: number): string =>
  v >= 1000 ? v.toLocaleString('en-US') : v >= 1 ? String(Number(v.toPrecision(4))) : String(v);

export function lineChart(spec: ChartSpec): string {
  const pts = spec.series.flatMap((s) => s.points).filter(([x]) => !spec.logX || x > 0);
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  let x0 = xs.length === 0 ? 0 : Math.min(...xs);
  let x1 = xs.length === 0 ? 1 : Math.max(...xs);
  if (spec.logX) {
    x0 = 10 ** Math.floor(Math.log10(x0 || 1));
    x1 = 10 ** Math.ceil(Math.log10(x1 || 10));
  }
  if (x1 === x0) x1 = x0 + 1;
  const y1 = Math.max(1, ...ys) * 1.1;
  const fx = (x: number): number => {
    const t = spec.logX
      ? (Math.log10(x) - Math.log10(x0)) / (Math.log10(x1) - Math.log10(x0))
      : (x - x0) / (x1 - x0);
    return PAD.left + t * (W - PAD.left - PAD.right);
  };
  const fy = (y: number): number => H - PAD.bottom - (y / y1) * (H - PAD.top - PAD.bottom);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(spec.title)}</text>`,
  ];
  for (const t of ticks(x0, x1, spec.logX === true)) {
    const x = fx(t).toFixed(1);
    out.push(
      `<line x1="${x}" y1="${PAD.top}" x2="${x}" y2="${H - PAD.bottom}" stroke="#eee"/>`,
      `<text x="${x}" y="${H - PAD.bottom + 16}" text-anchor="middle">${label(t)}</text>`,
    );
  }
  for (const t of ticks(0, y1, false)) {
    const y = fy(t).toFixed(1);
    out.push(
      `<line x1="${PAD.left}" y1="${y}" x2="${W - PAD.right}" y2="${y}" stroke="#eee"/>`,
      `<text x="${PAD.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${label(t)}</text>`,
    );
  }
  out.push(
    `<line x1="${PAD.left}" y1="${H - PAD.bottom}" x2="${W - PAD.right}" y2="${H - PAD.bottom}" stroke="#333"/>`,
    `<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${H - PAD.bottom}" stroke="#333"/>`,
    `<text x="${(PAD.left + W - PAD.right) / 2}" y="${H - PAD.bottom + 36}" text-anchor="middle">${esc(spec.xLabel)}</text>`,
    `<text x="16" y="${(PAD.top + H - PAD.bottom) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(PAD.top + H - PAD.bottom) / 2})">${esc(spec.yLabel)}</text>`,
  );
  spec.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length] as string;
    const path = s.points
      .filter(([x]) => !spec.logX || x > 0)
      .map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${fx(x).toFixed(1)},${fy(y).toFixed(1)}`)
      .join(' ');
    out.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [x, y] of s.points) {
      if (spec.logX && x <= 0) continue;
      out.push(
        `<circle cx="${fx(x).toFixed(1)}" cy="${fy(y).toFixed(1)}" r="2.5" fill="${color}"/>`,
      );
    }
    const col = i % 3;
    const row = Math.floor(i / 3);
    const lx = PAD.left + col * 230;
    const ly = H - PAD.bottom + 56 + row * 16;
    out.push(
      `<rect x="${lx}" y="${ly - 8}" width="14" height="4" fill="${color}"/>`,
      `<text x="${lx + 20}" y="${ly - 2}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}
