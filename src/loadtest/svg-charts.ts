/**
 * Inline SVG charts for the HTML report (html.ts): a line chart over already-transformed coordinates
 * (the caller takes log10 of latencies, or "nines" of percentiles, and hands over ticks in the same
 * space) and the diverging ratio bars of a --compare. Every number written into the SVG goes through
 * `n()`, so a zero range, a single point or an empty series can never put NaN or Infinity into the
 * document.
 */

/** Series colours, by backend (first appearance in the report). Tests look for these exact pixels. */
export const PALETTE = ['#2563eb', '#ea580c', '#059669', '#9333ea', '#db2777', '#0891b2', '#a16207', '#475569'];
/** Dash patterns, by --compare round (round 1 solid). */
export const DASHES = ['', '8 4', '2 3', '12 3 3 3'];
/** The ratio bars: B faster than A in every round, B slower, ... */
export const BAR_UP = '#16a34a';
export const BAR_DOWN = '#dc2626';
/** ... and rounds on both sides of 1.0. */
export const BAR_MIXED = '#d97706';

export interface Tick {
  v: number;
  label: string;
}
/** A linear axis over [min, max] (in the caller's plot space) with its ticks and title. */
export interface Axis {
  min: number;
  max: number;
  ticks: Tick[];
  title: string;
}
export interface Series {
  label: string;
  color: string;
  dash: string;
  points: Array<[number, number]>;
  /** points marked with a dot and a hover title (percentiles, single samples) */
  dots: Array<{ x: number; y: number; title: string }>;
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text and attribute values from the report (backend labels are user commands). */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ENTITIES[c] ?? '');
}

/** A finite number for an SVG attribute, one decimal. */
export function n(v: number): string {
  return Number.isFinite(v) ? String(Math.round(v * 10) / 10) : '0';
}

/** Ticks at 1/2/5 x 10^k covering [lo, hi], about `count` of them; the range is widened to whole ticks. */
export function niceAxis(lo: number, hi: number, count: number, fmt: (v: number) => string, title: string): Axis {
  if (!Number.isFinite(lo)) lo = 0;
  if (!Number.isFinite(hi)) hi = lo + 1;
  if (hi <= lo) hi = lo === 0 ? 1 : lo + Math.abs(lo) * 0.5;
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * mag >= raw) ?? 10) * mag;
  const min = Math.floor(lo / step + 1e-9) * step;
  const max = Math.ceil(hi / step - 1e-9) * step;
  const ticks: Tick[] = [];
  for (let i = 0; i <= Math.round((max - min) / step) && i < 50; i++) {
    const v = min + i * step;
    ticks.push({ v, label: fmt(Math.abs(v) < step / 1e6 ? 0 : v) });
  }
  return { min, max, ticks, title };
}

/** A log10 axis over whole decades covering [lo, hi] (both > 0); 2 and 5 ticks too when it spans few decades. */
export function logAxis(lo: number, hi: number, fmt: (v: number) => string, title: string): Axis {
  let d0 = Math.floor(Math.log10(lo > 0 && Number.isFinite(lo) ? lo : 1));
  let d1 = Math.ceil(Math.log10(hi > 0 && Number.isFinite(hi) ? hi : 10));
  if (d1 <= d0) d1 = d0 + 1;
  if (d1 - d0 > 12) d0 = d1 - 12;
  const ticks: Tick[] = [];
  for (let d = d0; d <= d1; d++) {
    for (const m of d1 - d0 <= 3 ? [1, 2, 5] : [1]) {
      const v = Math.log10(m) + d;
      if (v <= d1) ticks.push({ v, label: m === 1 || d1 - d0 <= 2 ? fmt(m * 10 ** d) : '' });
    }
  }
  return { min: d0, max: d1, ticks, title };
}

const W = 640;
const H = 330;
const M = { l: 70, r: 18, t: 14, b: 50 };

function frame(id: string, w: number, h: number, body: string, label: string): string {
  return `<svg id="${esc(id)}" class="chart" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" role="img" aria-label="${esc(label)}">${body}</svg>`;
}

/** Gridlines, tick labels and axis titles of a plot area at (x0,y0)-(x1,y1). */
function axes(x: Axis, y: Axis, sx: (v: number) => number, sy: (v: number) => number, box: { x0: number; y0: number; x1: number; y1: number }): string {
  const out: string[] = [];
  out.push(`<rect class="plot" x="${n(box.x0)}" y="${n(box.y0)}" width="${n(box.x1 - box.x0)}" height="${n(box.y1 - box.y0)}" fill="#fcfcfd" stroke="#cbd5e1"/>`);
  for (const t of x.ticks) {
    const px = n(sx(t.v));
    out.push(`<line x1="${px}" x2="${px}" y1="${n(box.y0)}" y2="${n(box.y1)}" stroke="#e2e8f0"/>`);
    out.push(`<line x1="${px}" x2="${px}" y1="${n(box.y1)}" y2="${n(box.y1 + 4)}" stroke="#64748b"/>`);
    if (t.label) out.push(`<text x="${px}" y="${n(box.y1 + 17)}" text-anchor="middle" class="tick">${esc(t.label)}</text>`);
  }
  for (const t of y.ticks) {
    const py = n(sy(t.v));
    out.push(`<line x1="${n(box.x0)}" x2="${n(box.x1)}" y1="${py}" y2="${py}" stroke="#e2e8f0"/>`);
    out.push(`<line x1="${n(box.x0 - 4)}" x2="${n(box.x0)}" y1="${py}" y2="${py}" stroke="#64748b"/>`);
    if (t.label) out.push(`<text x="${n(box.x0 - 7)}" y="${n(sy(t.v) + 4)}" text-anchor="end" class="tick">${esc(t.label)}</text>`);
  }
  out.push(`<text x="${n((box.x0 + box.x1) / 2)}" y="${n(box.y1 + 38)}" text-anchor="middle" class="axis-title">${esc(x.title)}</text>`);
  const yc = n((box.y0 + box.y1) / 2);
  out.push(`<text x="16" y="${yc}" text-anchor="middle" transform="rotate(-90 16 ${yc})" class="axis-title">${esc(y.title)}</text>`);
  return out.join('');
}

function scale(a: Axis, p0: number, p1: number): (v: number) => number {
  const span = a.max - a.min;
  return (v) => {
    const f = span > 0 && Number.isFinite(v) ? (Math.min(Math.max(v, a.min), a.max) - a.min) / span : 0;
    return p0 + f * (p1 - p0);
  };
}

/** A line chart; `empty` is shown instead of lines when no series has a point. */
export function lineChart(id: string, label: string, x: Axis, y: Axis, series: Series[], empty: string): string {
  const box = { x0: M.l, y0: M.t, x1: W - M.r, y1: H - M.b };
  const sx = scale(x, box.x0, box.x1);
  const sy = scale(y, box.y1, box.y0);
  const out = [axes(x, y, sx, sy, box)];
  const drawn = series.filter((s) => s.points.length > 0);
  if (drawn.length === 0) {
    out.push(`<text x="${n((box.x0 + box.x1) / 2)}" y="${n((box.y0 + box.y1) / 2)}" text-anchor="middle" class="empty">${esc(empty)}</text>`);
  }
  for (const s of drawn) {
    const d = s.points.map(([px, py], i) => `${i ? 'L' : 'M'}${n(sx(px))} ${n(sy(py))}`).join('');
    const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : '';
    out.push(`<path class="series" d="${d}" fill="none" stroke="${s.color}" stroke-width="2.5" stroke-linejoin="round"${dash}><title>${esc(s.label)}</title></path>`);
  }
  for (const s of drawn) {
    for (const dot of s.dots) {
      out.push(`<circle class="dot" cx="${n(sx(dot.x))}" cy="${n(sy(dot.y))}" r="4.5" fill="${s.color}" stroke="#fff" stroke-width="1"><title>${esc(dot.title)}</title></circle>`);
    }
  }
  return frame(id, W, H, out.join(''), label);
}

export interface RatioRow {
  label: string;
  ratio: number;
  min: number;
  max: number;
  note: string;
}

/** Horizontal bars from 1.0 to each ratio, a whisker over [min, max], a reference line at 1.0. */
export function ratioBars(id: string, label: string, rows: RatioRow[], title: string): string {
  const fin = (v: number) => (Number.isFinite(v) ? v : 1);
  const values = rows.flatMap((r) => [fin(r.ratio), fin(r.min), fin(r.max)]);
  const lo = Math.min(1, ...values);
  const hi = Math.max(1, ...values);
  const pad = Math.max((hi - lo) * 0.08, 0.05);
  const x = niceAxis(Math.max(0, lo - pad), hi + pad, 8, (v) => `${fixed(v, 2)}×`, title);
  const rowH = 34;
  const left = 230;
  const h = M.t + rows.length * rowH + M.b;
  const w = 900;
  const box = { x0: left, y0: M.t, x1: w - M.r - 50, y1: h - M.b };
  const sx = scale(x, box.x0, box.x1);
  const y: Axis = { min: 0, max: 1, ticks: [], title: '' };
  const out = [axes(x, y, sx, () => 0, box)];
  rows.forEach((r, i) => {
    const cy = box.y0 + i * rowH + rowH / 2;
    const ratio = fin(r.ratio);
    const a = sx(Math.min(1, ratio));
    const b = sx(Math.max(1, ratio));
    const colour = fin(r.min) < 1 && fin(r.max) > 1 ? BAR_MIXED : ratio >= 1 ? BAR_UP : BAR_DOWN;
    out.push(`<text x="${n(box.x0 - 10)}" y="${n(cy + 4)}" text-anchor="end" class="bar-label">${esc(clip(r.label, 30))}<title>${esc(r.label)}</title></text>`);
    out.push(`<rect class="bar" x="${n(a)}" y="${n(cy - 9)}" width="${n(Math.max(b - a, 1.5))}" height="18" fill="${colour}"><title>${esc(r.note)}</title></rect>`);
    const w0 = sx(fin(r.min));
    const w1 = sx(fin(r.max));
    out.push(`<path class="whisker" d="M${n(w0)} ${n(cy)}H${n(w1)}M${n(w0)} ${n(cy - 6)}V${n(cy + 6)}M${n(w1)} ${n(cy - 6)}V${n(cy + 6)}" stroke="#0f172a" stroke-width="1.5" fill="none"/>`);
    out.push(`<text x="${n(Math.max(w1, b) + 6)}" y="${n(cy + 4)}" class="bar-value">${esc(`${fixed(ratio, 2)}×`)}</text>`);
  });
  const one = n(sx(1));
  out.push(`<line class="ref" x1="${one}" x2="${one}" y1="${n(box.y0 - 4)}" y2="${n(box.y1 + 4)}" stroke="#0f172a" stroke-width="1.5" stroke-dasharray="5 3"/>`);
  return frame(id, w, h, out.join(''), label);
}

function clip(s: string, len: number): string {
  return s.length > len ? `${s.slice(0, len - 1)}…` : s;
}

/** `v` with `digits` decimals; '—' for a non-finite value. */
export function fixed(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : '—';
}
