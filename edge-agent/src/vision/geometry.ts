/**
 * Where the image lands inside the model's input, and how model boxes map back to image pixels.
 * Pure functions: the sharp pipeline and the box decoder both follow the same Placement.
 */
import type { Box, FitMode } from './types.js';

/** The image's rectangle inside the model input, in model-input pixels (integers). */
export interface Placement {
  /** Model input size. */
  inputWidth: number;
  inputHeight: number;
  /** Original image size (after EXIF orientation). */
  imageWidth: number;
  imageHeight: number;
  /** Where the resized image sits in the input; the rest is background. */
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface PlacementOptions {
  /** Canvas size as a multiple of the image size (>= 1; 1 = no padding). */
  pad?: number;
  fit?: FitMode;
}

/**
 * Plan how an image of imageWidth x imageHeight fills a model input of inputWidth x inputHeight:
 * conceptually the image is centred on a canvas `pad` times its size (padForDetection), and the
 * canvas is stretched or letterboxed into the input.
 */
export function planPlacement(
  imageWidth: number,
  imageHeight: number,
  inputWidth: number,
  inputHeight: number,
  { pad = 1, fit = 'stretch' }: PlacementOptions = {},
): Placement {
  if (!(imageWidth >= 1 && imageHeight >= 1)) {
    throw new Error(`image size must be at least 1x1 pixels, got ${imageWidth}x${imageHeight}`);
  }
  if (!(Number.isFinite(pad) && pad >= 1)) {
    throw new Error(`pad must be a number >= 1 (1 = no padding), got ${pad}`);
  }
  let width: number;
  let height: number;
  if (fit === 'stretch') {
    width = inputWidth / pad;
    height = inputHeight / pad;
  } else if (fit === 'letterbox') {
    const scale = Math.min(inputWidth / (imageWidth * pad), inputHeight / (imageHeight * pad));
    width = imageWidth * scale;
    height = imageHeight * scale;
  } else {
    throw new Error(`fit must be 'stretch' or 'letterbox', got ${String(fit)}`);
  }
  width = Math.min(inputWidth, Math.max(1, Math.round(width)));
  height = Math.min(inputHeight, Math.max(1, Math.round(height)));
  return {
    inputWidth,
    inputHeight,
    imageWidth,
    imageHeight,
    left: Math.floor((inputWidth - width) / 2),
    top: Math.floor((inputHeight - height) / 2),
    width,
    height,
  };
}

const clip = (v: number, max: number): number => (v < 0 ? 0 : v > max ? max : v);

/** Map a box normalised to the model input (0..1) to image pixels, clipped to the image. */
export function toImageBox(box: Box, p: Placement): Box {
  const sx = p.imageWidth / p.width;
  const sy = p.imageHeight / p.height;
  return {
    x1: clip((box.x1 * p.inputWidth - p.left) * sx, p.imageWidth),
    y1: clip((box.y1 * p.inputHeight - p.top) * sy, p.imageHeight),
    x2: clip((box.x2 * p.inputWidth - p.left) * sx, p.imageWidth),
    y2: clip((box.y2 * p.inputHeight - p.top) * sy, p.imageHeight),
  };
}
