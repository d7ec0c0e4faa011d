/** Types shared by the vision stage (detector, classify, bench). */

import type { Box } from '../geometry.js';

export type { Box };

/** Mask state of one face; 'unknown' when the model only finds faces. */
export type MaskState = 'mask' | 'no_mask' | 'unknown';

export interface FaceDetection {
  /** In the input image's pixels (after EXIF orientation), clipped to the image. */
  box: Box;
  /** p(face) + p(masked_face) for masked-face models, p(face) for face-only models. */
  score: number;
  mask: MaskState;
  /** p(masked_face) / (p(face) + p(masked_face)); null for face-only models. */
  maskScore: number | null;
}

/** Milliseconds spent in each stage of one `detect` call. */
export interface DetectTimings {
  /** sharp: decode (with shrink-on-load), resize and pad, in one pipeline. */
  decodeMs: number;
  /** HWC uint8 -> normalised NCHW float32 into the reused input tensor. */
  preprocessMs: number;
  inferenceMs: number;
  /** Score filter, NMS, top-k, mapping boxes back to image pixels. */
  postprocessMs: number;
}

export interface DetectResult {
  faces: FaceDetection[];
  timings: DetectTimings;
}

/** Undecoded pixels: interleaved 8-bit RGB, row-major, width * height * 3 bytes. */
export interface RawRgbImage {
  data: Buffer;
  width: number;
  height: number;
}

/** An encoded JPEG/PNG/WebP (as a camera or file delivers it) or raw RGB pixels. */
export type DetectorImage = Buffer | RawRgbImage;

/**
 * How the image is fitted into the model's input.
 * - 'stretch': resized to the input size, aspect ratio not kept (what UltraFace was trained with).
 * - 'letterbox': aspect ratio kept, the rest filled with the neutral background.
 */
export type FitMode = 'stretch' | 'letterbox';

export interface DetectOptions {
  /** Minimum face score; default: the manifest's decoding.scoreThreshold. */
  scoreThreshold?: number;
  /** Hard-NMS IoU; default: the manifest's decoding.nmsIouThreshold (0.3 upstream). */
  iouThreshold?: number;
  /** At most this many faces, best first (default 100). */
  maxFaces?: number;
  /**
   * Place the image in the middle of a neutral grey canvas `padForDetection` times its size
   * (default 1 = no padding) before fitting it to the model. Tight face crops need this: the
   * detector was trained on scenes, where a face never fills the whole frame. Boxes are still
   * returned in the original image's pixels.
   */
  padForDetection?: number;
  fit?: FitMode;
}
