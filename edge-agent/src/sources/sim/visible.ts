/**
 * Visible rendering: a plain, slightly textured wall and floor (no faces of its own), the
 * blackbody's housing, the person's clothes and neck, and the face crop composited at its box.
 * Pixels are assembled in a raw RGB buffer; sharp resizes the crop and encodes the JPEG.
 */
import sharp from 'sharp';
import type { BlackbodyRegion } from '../../frames.js';
import type { FaceImage } from './faces.js';
import type { Homography } from './homography.js';
import { applyHomography } from './homography.js';
import type { FaceBox } from './people.js';
import type { Rng } from './random.js';

export interface RgbImage {
  width: number;
  height: number;
  /** RGB, row-major. */
  rgb: Buffer;
}

/** Wall with soft blotches and fine grain, a darker floor, and the blackbody housing where it is. */
export function renderBackground(rng: Rng, width: number, height: number, blackbodyBox: { x: number; y: number; w: number; h: number } | null): RgbImage {
  const rgb = Buffer.alloc(width * height * 3);
  // Low-frequency blotches: bilinear interpolation of a coarse random grid.
  const gw = 9;
  const gh = 7;
  const grid = Array.from({ length: gw * gh }, () => rng.uniform(-7, 7));
  const floorY = Math.round(height * 0.82);
  for (let y = 0; y < height; y++) {
    const gy = (y / height) * (gh - 1);
    const y0 = Math.min(gh - 2, Math.floor(gy));
    const fy = gy - y0;
    for (let x = 0; x < width; x++) {
      const gx = (x / width) * (gw - 1);
      const x0 = Math.min(gw - 2, Math.floor(gx));
      const fx = gx - x0;
      const blotch =
        grid[y0 * gw + x0]! * (1 - fx) * (1 - fy) + grid[y0 * gw + x0 + 1]! * fx * (1 - fy) +
        grid[(y0 + 1) * gw + x0]! * (1 - fx) * fy + grid[(y0 + 1) * gw + x0 + 1]! * fx * fy;
      const grain = rng.uniform(-3, 3);
      const base = y < floorY ? [203, 198, 186] : y === floorY ? [120, 116, 110] : [150, 146, 140];
      const i = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) rgb[i + c] = clampByte(base[c]! + blotch + grain);
    }
  }
  if (blackbodyBox) {
    const m = Math.round(Math.max(blackbodyBox.w, blackbodyBox.h) * 0.25);
    fillRect(rgb, width, height, blackbodyBox.x - m, blackbodyBox.y - m, blackbodyBox.w + 2 * m, blackbodyBox.h + 2 * m, [70, 72, 76]);
    fillRect(rgb, width, height, blackbodyBox.x, blackbodyBox.y, blackbodyBox.w, blackbodyBox.h, [18, 18, 18]);
  }
  return { width, height, rgb };
}

/** The blackbody's thermal region seen in visible pixels (via the inverse homography). */
export function blackbodyInVisible(inverse: Homography, bb: BlackbodyRegion): { x: number; y: number; w: number; h: number } {
  const a = applyHomography(inverse, bb.x, bb.y);
  const b = applyHomography(inverse, bb.x + bb.w, bb.y + bb.h);
  return { x: Math.round(Math.min(a.x, b.x)), y: Math.round(Math.min(a.y, b.y)), w: Math.round(Math.abs(b.x - a.x)), h: Math.round(Math.abs(b.y - a.y)) };
}

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

function fillRect(rgb: Buffer, width: number, height: number, x: number, y: number, w: number, h: number, colour: readonly number[]): void {
  for (let yy = Math.max(0, y); yy < Math.min(height, y + h); yy++) {
    for (let xx = Math.max(0, x); xx < Math.min(width, x + w); xx++) {
      const i = (yy * width + xx) * 3;
      rgb[i] = colour[0]!;
      rgb[i + 1] = colour[1]!;
      rgb[i + 2] = colour[2]!;
    }
  }
}

/** One person to draw: face box, crop, clothes colour, and whether the face is motion-blurred. */
export interface PersonDrawing {
  box: Omit<FaceBox, 'frame'>;
  face: FaceImage;
  shirtRgb: readonly number[];
  blurred?: boolean;
}

/**
 * Draw a person into a copy of the background: torso and neck (the same shapes, in face-box
 * coordinates, as the thermal model) and then the face crop resized to the box.
 */
export function renderPersonFrame(background: RgbImage, box: Omit<FaceBox, 'frame'>, face: FaceImage, shirtRgb: readonly number[]): Promise<RgbImage> {
  return renderPeopleFrame(background, [{ box, face, shirtRgb }]);
}

/** Draw people back to front (the caller orders them) into a copy of the background. */
export async function renderPeopleFrame(background: RgbImage, people: readonly PersonDrawing[]): Promise<RgbImage> {
  const rgb = Buffer.from(background.rgb);
  for (const p of people) await drawPerson(rgb, background.width, background.height, p);
  return { width: background.width, height: background.height, rgb };
}

async function drawPerson(rgb: Buffer, width: number, height: number, { box, face, shirtRgb, blurred }: PersonDrawing): Promise<void> {
  // Neck: |fx-0.5| <= 0.19 for 0.8 < fy <= 1.3; torso: fy >= 1.22, widening into shoulders.
  for (let y = Math.max(0, Math.ceil(box.y + 0.8 * box.h)); y < height; y++) {
    const fy = (y + 0.5 - box.y) / box.h;
    const torsoHalf = fy >= 1.22 ? Math.min(1.15, 0.45 + (fy - 1.22) * 2.5) : -1;
    const neckHalf = fy <= 1.3 ? 0.19 : -1;
    const half = Math.max(torsoHalf, neckHalf);
    if (half < 0) continue;
    const colour = torsoHalf >= neckHalf ? shirtRgb : face.skinRgb;
    const x0 = Math.max(0, Math.ceil(box.x + (0.5 - half) * box.w));
    const x1 = Math.min(width, Math.floor(box.x + (0.5 + half) * box.w));
    for (let x = x0; x < x1; x++) {
      const i = (y * width + x) * 3;
      rgb[i] = colour[0]!;
      rgb[i + 1] = colour[1]!;
      rgb[i + 2] = colour[2]!;
    }
  }
  let resized = sharp(face.rgb, { raw: { width: face.width, height: face.height, channels: 3 } }).resize(box.w, box.h, { fit: 'fill' });
  // Motion blur stand-in: a strong Gaussian blur scaled to the face (hides the features the detector needs).
  if (blurred) resized = resized.blur(Math.max(1, box.w * 0.06));
  const scaled = await resized.raw().toBuffer();
  for (let row = 0; row < box.h; row++) {
    const y = box.y + row;
    if (y < 0 || y >= height) continue;
    const from = Math.max(0, -box.x);
    const to = Math.min(box.w, width - box.x);
    if (to <= from) continue;
    scaled.copy(rgb, (y * width + box.x + from) * 3, (row * box.w + from) * 3, (row * box.w + to) * 3);
  }
}

export function encodeJpeg(image: RgbImage, quality: number): Promise<Buffer> {
  return sharp(image.rgb, { raw: { width: image.width, height: image.height, channels: 3 } }).jpeg({ quality }).toBuffer();
}
