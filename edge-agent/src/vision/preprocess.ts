/**
 * Image -> model input. One sharp pipeline decodes (with JPEG shrink-on-load), drops alpha onto
 * a neutral background, converts greyscale to RGB, resizes and pads to the model input; then a
 * single loop writes normalised NCHW floats into a caller-owned, reused Float32Array.
 */
import sharp, { type Metadata, type Sharp } from 'sharp';
import type { ModelInputSpec } from '@checkpoint/models';
import { planPlacement, type Placement, type PlacementOptions } from './geometry.js';
import type { DetectorImage } from './types.js';

/** Mid grey: normalises to ~0 with UltraFace's (pixel - 127) / 128, so padding carries no signal. */
export const NEUTRAL_BACKGROUND = { r: 127, g: 127, b: 127 } as const;

const isRaw = (image: DetectorImage): image is Exclude<DetectorImage, Buffer> => !Buffer.isBuffer(image);

/** Input size of a model from its manifest (NCHW). */
export function inputSize(spec: ModelInputSpec): { width: number; height: number } {
  return { width: spec.shape[3], height: spec.shape[2] };
}

/**
 * Decode, fit and pad an image to the model input size. Returns interleaved RGB bytes of
 * exactly input width x height and the placement needed to map boxes back.
 */
export async function loadForModel(
  image: DetectorImage,
  spec: ModelInputSpec,
  options: PlacementOptions = {},
): Promise<{ rgb: Buffer; placement: Placement }> {
  const { width: inW, height: inH } = inputSize(spec);
  let pipeline: Sharp;
  let imageWidth: number;
  let imageHeight: number;
  // Raw input is RGB already; encoded input needs alpha dropped and grey expanded (rare, so the
  // header decides whether those steps run at all).
  let hasAlpha = false;
  let isRgb = true;
  if (isRaw(image)) {
    const { data, width, height } = image;
    if (!Buffer.isBuffer(data) || data.length !== width * height * 3) {
      throw new Error(`raw RGB image must have width*height*3 = ${width * height * 3} bytes, got ${data?.length}`);
    }
    pipeline = sharp(data, { raw: { width, height, channels: 3 } });
    imageWidth = width;
    imageHeight = height;
  } else {
    pipeline = sharp(image, { autoOrient: true });
    let meta: Metadata;
    try {
      meta = await pipeline.metadata();
    } catch (err) {
      throw new Error(`cannot read image (${image.length} bytes): ${(err as Error).message}`);
    }
    imageWidth = meta.autoOrient.width;
    imageHeight = meta.autoOrient.height;
    hasAlpha = meta.hasAlpha;
    isRgb = meta.space === 'srgb' && (meta.channels ?? 0) >= 3;
  }
  const placement = planPlacement(imageWidth, imageHeight, inW, inH, options);
  const { left, top, width, height } = placement;
  if (hasAlpha) pipeline = pipeline.flatten({ background: NEUTRAL_BACKGROUND });
  if (!isRgb) pipeline = pipeline.toColourspace('srgb');
  pipeline = pipeline.resize(width, height, { fit: 'fill' });
  if (width !== inW || height !== inH) {
    pipeline = pipeline.extend({
      left,
      top,
      right: inW - width - left,
      bottom: inH - height - top,
      background: NEUTRAL_BACKGROUND,
    });
  }
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  if (info.width !== inW || info.height !== inH || info.channels !== 3) {
    // Would mean a sharp behaviour change; better loud than silently misaligned boxes.
    throw new Error(`preprocess produced ${info.width}x${info.height}x${info.channels}, expected ${inW}x${inH}x3`);
  }
  return { rgb: data, placement };
}

/** Interleaved RGB bytes -> (pixel - mean) / std, planar NCHW, written into `out`. */
export function toNchwFloat(rgb: Uint8Array, spec: ModelInputSpec, out: Float32Array): Float32Array {
  const { width, height } = inputSize(spec);
  const plane = width * height;
  if (rgb.length !== plane * 3 || out.length !== plane * 3) {
    throw new Error(`expected ${plane * 3} values for a ${width}x${height} input, got ${rgb.length} in, ${out.length} out`);
  }
  const [m0, m1, m2] = spec.mean;
  const [s0, s1, s2] = [1 / spec.std[0], 1 / spec.std[1], 1 / spec.std[2]];
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    out[i] = ((rgb[p] as number) - m0) * s0;
    out[i + plane] = ((rgb[p + 1] as number) - m1) * s1;
    out[i + 2 * plane] = ((rgb[p + 2] as number) - m2) * s2;
  }
  return out;
}
