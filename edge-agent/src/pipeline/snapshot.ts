/**
 * The evidence JPEG for a guard: the visible face crop beside the thermal crop (false colour,
 * measured spot marked). Made only for decisions that need a person to look (policy), and never
 * logged. Thermal-only sites get the thermal half alone.
 */
import sharp from 'sharp';
import type { FramePair } from '../frames.js';
import type { Box } from '../geometry.js';

const HEIGHT = 240;

/** A perceptual "iron" palette: black -> purple -> red -> yellow -> white. */
function ironColour(t: number): [number, number, number] {
  const c = Math.min(1, Math.max(0, t));
  const r = Math.min(255, Math.round(255 * Math.min(1, c * 1.8)));
  const g = Math.round(255 * Math.max(0, Math.min(1, (c - 0.4) * 1.7)));
  const b = Math.round(255 * (c < 0.3 ? c * 2.5 : Math.max(0, (c - 0.8) * 5)));
  return [r, g, b];
}

function expand(box: Box, factor: number, width: number, height: number) {
  const w = box.x2 - box.x1;
  const h = box.y2 - box.y1;
  const left = Math.max(0, Math.floor(box.x1 - w * factor));
  const top = Math.max(0, Math.floor(box.y1 - h * factor));
  const right = Math.min(width, Math.ceil(box.x2 + w * factor));
  const bottom = Math.min(height, Math.ceil(box.y2 + h * factor));
  return { left, top, width: Math.max(1, right - left), height: Math.max(1, bottom - top) };
}

async function thermalCrop(pair: FramePair, thermalBox: Box, spot: { x: number; y: number } | null): Promise<Buffer> {
  const t = pair.thermal;
  const r = expand(thermalBox, 0.15, t.width, t.height);
  let lo = Infinity;
  let hi = -Infinity;
  for (let y = r.top; y < r.top + r.height; y++) {
    for (let x = r.left; x < r.left + r.width; x++) {
      const c = t.celsius[y * t.width + x]!;
      lo = Math.min(lo, c);
      hi = Math.max(hi, c);
    }
  }
  const span = Math.max(1, hi - lo);
  const rgb = Buffer.alloc(r.width * r.height * 3);
  for (let y = 0; y < r.height; y++) {
    for (let x = 0; x < r.width; x++) {
      const [cr, cg, cb] = ironColour((t.celsius[(y + r.top) * t.width + x + r.left]! - lo) / span);
      const o = (y * r.width + x) * 3;
      rgb[o] = cr;
      rgb[o + 1] = cg;
      rgb[o + 2] = cb;
    }
  }
  if (spot) {
    // Mark the measured spot with a cyan outline, one pixel around it.
    for (let y = spot.y - 1; y <= spot.y + 2; y++) {
      for (let x = spot.x - 1; x <= spot.x + 2; x++) {
        const edge = y === spot.y - 1 || y === spot.y + 2 || x === spot.x - 1 || x === spot.x + 2;
        const lx = x - r.left;
        const ly = y - r.top;
        if (edge && lx >= 0 && ly >= 0 && lx < r.width && ly < r.height) rgb.set([0, 255, 255], (ly * r.width + lx) * 3);
      }
    }
  }
  return sharp(rgb, { raw: { width: r.width, height: r.height, channels: 3 } })
    .resize({ height: HEIGHT, kernel: 'nearest' })
    .png()
    .toBuffer();
}

export async function renderSnapshot(
  pair: FramePair,
  visibleBox: Box | null,
  thermalBox: Box,
  spot: { x: number; y: number } | null,
  quality = 80,
): Promise<Buffer> {
  const thermal = await thermalCrop(pair, thermalBox, spot);
  const parts: Buffer[] = [];
  if (pair.visible && visibleBox) {
    const v = pair.visible;
    const face = await sharp(v.encoded).extract(expand(visibleBox, 0.2, v.width, v.height)).resize({ height: HEIGHT }).png().toBuffer();
    parts.push(face);
  }
  parts.push(thermal);
  const metas = await Promise.all(parts.map((p) => sharp(p).metadata()));
  const width = metas.reduce((s, m) => s + (m.width ?? 0), 0);
  let left = 0;
  const composite = parts.map((input, i) => {
    const placed = { input, left, top: 0 };
    left += metas[i]!.width ?? 0;
    return placed;
  });
  return sharp({ create: { width, height: HEIGHT, channels: 3, background: '#000' } })
    .composite(composite)
    .jpeg({ quality })
    .toBuffer();
}
