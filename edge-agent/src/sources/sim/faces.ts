/**
 * The face crops people wear in the simulator: a folder of tight face crops with labels.csv
 * (`file,label`, label `mask` | `no_mask`). Crops are decoded once, normalised to a face-like
 * aspect ratio and kept small, so a frame only needs one small resize.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { Metadata } from 'sharp';

export type MaskLabel = 'mask' | 'no_mask';

export interface FaceCrop {
  file: string;
  label: MaskLabel;
  /** height / width of the face box this crop is drawn in (the crop is cover-cropped to it). */
  aspect: number;
}

export interface FaceImage {
  /** RGB, `width` x `height`, row-major. */
  rgb: Buffer;
  width: number;
  height: number;
  /** Mean colour of the crop's centre, used for the neck below it. */
  skinRgb: [number, number, number];
}

/** Face boxes are kept between square and 1.35 tall; crops outside that are cover-cropped (centre). */
const MIN_ASPECT = 1.0;
const MAX_ASPECT = 1.35;
/** Crops are cached at this width; faces are drawn at most ~180 px wide. */
const CACHE_WIDTH = 200;
/** Transparent crops are flattened onto a neutral wall colour. */
const FLATTEN_BACKGROUND = { r: 200, g: 196, b: 186 };

/** Parse labels.csv; `where` names the file in errors. */
export function parseFaceLabels(text: string, where: string): { file: string; label: MaskLabel }[] {
  const lines = text.split(/\r?\n/);
  if (lines[0]?.trim() !== 'file,label') throw new Error(`${where}: first line must be the header "file,label" (got ${JSON.stringify(lines[0])})`);
  const out: { file: string; label: MaskLabel }[] = [];
  lines.slice(1).forEach((line, i) => {
    if (line.trim() === '') return;
    const [file, label, ...rest] = line.split(',').map((s) => s.trim());
    if (!file || rest.length > 0 || (label !== 'mask' && label !== 'no_mask')) {
      throw new Error(`${where}:${i + 2}: expected "<file>,mask" or "<file>,no_mask" (got ${JSON.stringify(line)})`);
    }
    out.push({ file, label });
  });
  if (out.length === 0) throw new Error(`${where}: lists no face crops`);
  return out;
}

/** Faces of a crop folder, with the lazily filled pixel cache. */
export class FaceLibrary {
  private readonly images = new Map<string, Promise<FaceImage>>();

  private constructor(
    readonly dir: string,
    readonly crops: readonly FaceCrop[],
  ) {}

  /** Read labels.csv and every crop's size (headers only). */
  static async load(dir: string): Promise<FaceLibrary> {
    const labelsFile = join(dir, 'labels.csv');
    let text: string;
    try {
      text = await readFile(labelsFile, 'utf8');
    } catch (err) {
      throw new Error(`face crops: cannot read ${labelsFile} (${(err as Error).message})`);
    }
    const crops = await Promise.all(
      parseFaceLabels(text, labelsFile).map(async ({ file, label }) => {
        const path = join(dir, file);
        let meta: Metadata;
        try {
          meta = await sharp(path).metadata();
        } catch (err) {
          throw new Error(`face crop ${path} (listed in ${labelsFile}): ${(err as Error).message}`);
        }
        const rotated = (meta.orientation ?? 1) >= 5;
        const w = (rotated ? meta.height : meta.width) ?? 1;
        const h = (rotated ? meta.width : meta.height) ?? 1;
        return { file, label, aspect: Math.min(MAX_ASPECT, Math.max(MIN_ASPECT, h / w)) };
      }),
    );
    return new FaceLibrary(dir, crops);
  }

  byLabel(label: MaskLabel): FaceCrop[] {
    return this.crops.filter((c) => c.label === label);
  }

  image(crop: FaceCrop): Promise<FaceImage> {
    let image = this.images.get(crop.file);
    if (!image) {
      image = decodeCrop(join(this.dir, crop.file), crop.aspect);
      this.images.set(crop.file, image);
    }
    return image;
  }
}

async function decodeCrop(path: string, aspect: number): Promise<FaceImage> {
  const width = CACHE_WIDTH;
  const height = Math.round(CACHE_WIDTH * aspect);
  const rgb = await sharp(path)
    .rotate()
    .flatten({ background: FLATTEN_BACKGROUND })
    .resize(width, height, { fit: 'cover', position: 'centre' })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer();
  const sum: [number, number, number] = [0, 0, 0];
  let n = 0;
  for (let y = Math.floor(height * 0.45); y < height * 0.6; y++) {
    for (let x = Math.floor(width * 0.3); x < width * 0.7; x++) {
      const i = (y * width + x) * 3;
      sum[0] += rgb[i]!;
      sum[1] += rgb[i + 1]!;
      sum[2] += rgb[i + 2]!;
      n++;
    }
  }
  const skinRgb = sum.map((s) => Math.round(s / n)) as [number, number, number];
  return { rgb, width, height, skinRgb };
}
