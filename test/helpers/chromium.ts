/**
 * Headless Chromium for tests of HTML output: a screenshot of a page, the page boxes of its charts,
 * and a small PNG decoder (8-bit RGB/RGBA, no interlace: what Chromium writes) to count pixels.
 * Debian 12: `apt-get install chromium` (see docs/testing.md).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

export const CHROMIUM = process.env.VIRTIOFSD_TS_CHROMIUM ?? '/usr/bin/chromium';

/** Why pages cannot be rendered here, or null. */
export function chromiumSkipReason(): string | null {
  return fs.existsSync(CHROMIUM) ? null : `missing: ${CHROMIUM} (apt-get install chromium)`;
}

// Without the background-networking, component-update and sync switches Chromium keeps trying the
// (closed) network and takes many seconds per page; a fresh profile per run keeps runs independent.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--hide-scrollbars',
  '--force-device-scale-factor=1',
];

function chromium(args: string[]): string {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'vfsd-chromium-'));
  try {
    const r = spawnSync(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, ...args], {
      encoding: 'utf8',
      timeout: 90_000,
      maxBuffer: 64 << 20,
    });
    if (r.status !== 0) throw new Error(`chromium ${args.join(' ')}: status ${r.status} ${r.signal ?? ''}\n${r.stderr.slice(-2000)}`);
    return r.stdout;
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * The page's height and, for every `svg[id]`, the box of its `.plot` element (the plot area without
 * axis labels and legend; the whole svg if it has none), in page pixels at `width`. Measured on a
 * copy of the page with a script appended at the end of the body, which changes nothing above it.
 */
export function pageLayout(htmlFile: string, width: number): { height: number; boxes: Record<string, Box> } {
  const measure = `${htmlFile}.measure.html`;
  const script = `<script>(() => {
  const out = { height: document.documentElement.scrollHeight, boxes: {} };
  for (const svg of document.querySelectorAll('svg[id]')) {
    const r = (svg.querySelector('.plot') || svg).getBoundingClientRect();
    out.boxes[svg.id] = { x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height };
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-json';
  pre.textContent = btoa(JSON.stringify(out));
  document.body.appendChild(pre);
})();</script>`;
  const html = fs.readFileSync(htmlFile, 'utf8');
  fs.writeFileSync(measure, html.includes('</body>') ? html.replace('</body>', `${script}</body>`) : html + script);
  try {
    const dom = chromium([`--window-size=${width},1000`, '--dump-dom', `file://${measure}`]);
    const m = /<pre id="layout-json">([A-Za-z0-9+/=]+)<\/pre>/.exec(dom);
    if (!m) throw new Error(`no layout in the dumped DOM (${dom.length} chars)`);
    return JSON.parse(Buffer.from(m[1]!, 'base64').toString('utf8'));
  } finally {
    fs.rmSync(measure, { force: true });
  }
}

/** Renders `htmlFile` in a width x height window to `pngFile`. */
export function screenshot(htmlFile: string, pngFile: string, width: number, height: number): void {
  chromium([`--window-size=${width},${height}`, `--screenshot=${pngFile}`, `file://${htmlFile}`]);
}

export interface Image {
  width: number;
  height: number;
  /** bytes per pixel: 3 (RGB) or 4 (RGBA) */
  channels: number;
  data: Buffer;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, k) => {
  let c = k;
  for (let i = 0; i < 8; i++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Decodes a PNG (PNG spec: chunks with CRCs, IHDR, zlib IDAT stream, per-row filters 0-4); throws if invalid. */
export function decodePng(png: Buffer): Image {
  if (png.length < 8 || !png.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG: bad signature');
  let off = 8;
  let ihdr: Buffer | null = null;
  const idat: Buffer[] = [];
  let ended = false;
  while (off + 12 <= png.length && !ended) {
    const len = png.readUInt32BE(off);
    if (off + 12 + len > png.length) throw new Error('truncated chunk');
    const type = png.toString('latin1', off + 4, off + 8);
    const body = png.subarray(off + 8, off + 8 + len);
    if (crc32(png.subarray(off + 4, off + 8 + len)) !== png.readUInt32BE(off + 8 + len)) throw new Error(`bad CRC in ${type}`);
    if (type === 'IHDR') ihdr = body;
    else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') ended = true;
    off += 12 + len;
  }
  if (ihdr?.length !== 13 || !ended || idat.length === 0) throw new Error('missing IHDR, IDAT or IEND');
  const width = ihdr.readUInt32BE(0);
  const height = ihdr.readUInt32BE(4);
  const [depth, colourType, , , interlace] = [ihdr[8], ihdr[9], ihdr[10], ihdr[11], ihdr[12]];
  if (depth !== 8 || (colourType !== 2 && colourType !== 6) || interlace !== 0) {
    throw new Error(`unsupported PNG: depth ${depth}, colour type ${colourType}, interlace ${interlace}`);
  }
  const channels = colourType === 6 ? 4 : 3;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length !== height * (stride + 1)) throw new Error(`IDAT holds ${raw.length} bytes, expected ${height * (stride + 1)}`);
  const data = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    for (let i = 0; i < stride; i++) {
      const x = raw[src + i]!;
      const a = i >= channels ? data[row + i - channels]! : 0;
      const b = y > 0 ? data[row - stride + i]! : 0;
      const c = y > 0 && i >= channels ? data[row - stride + i - channels]! : 0;
      let v: number;
      switch (filter) {
        case 0:
          v = x;
          break;
        case 1:
          v = x + a;
          break;
        case 2:
          v = x + b;
          break;
        case 3:
          v = x + ((a + b) >> 1);
          break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          v = x + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default:
          throw new Error(`bad filter ${filter} on row ${y}`);
      }
      data[row + i] = v & 0xff;
    }
  }
  return { width, height, channels, data };
}

/** '#rrggbb' as [r, g, b]. */
export function rgb(hex: string): [number, number, number] {
  const v = Number.parseInt(hex.slice(1), 16);
  return [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
}

/** How many pixels inside `box` are within `tolerance` (per channel) of `colour`. */
export function countColour(img: Image, box: Box, colour: string, tolerance = 10): number {
  const [r, g, b] = rgb(colour);
  const x0 = Math.max(0, Math.floor(box.x));
  const y0 = Math.max(0, Math.floor(box.y));
  const x1 = Math.min(img.width, Math.ceil(box.x + box.w));
  const y1 = Math.min(img.height, Math.ceil(box.y + box.h));
  let count = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const p = (y * img.width + x) * img.channels;
      const d = Math.max(Math.abs(img.data[p]! - r), Math.abs(img.data[p + 1]! - g), Math.abs(img.data[p + 2]! - b));
      if (d <= tolerance) count++;
    }
  }
  return count;
}
