/** Pure parts of the vision stage: geometry, NMS, UltraFace decoding, view fusion, normalisation. */
import { describe, expect, it } from 'vitest';
import { getManifest } from '@checkpoint/models';
import {
  classLayoutFromLabels,
  decodeUltraface,
  fuseViews,
  hardNms,
  iou,
  percentile,
  planPlacement,
  toImageBox,
  toNchwFloat,
  type Box,
  type FaceDetection,
} from '../src/vision/index.js';

const box = (x1: number, y1: number, x2: number, y2: number): Box => ({ x1, y1, x2, y2 });

describe('iou', () => {
  it('is 1 for identical boxes, 0 for disjoint or touching ones', () => {
    expect(iou(box(0, 0, 10, 10), box(0, 0, 10, 10))).toBe(1);
    expect(iou(box(0, 0, 10, 10), box(20, 20, 30, 30))).toBe(0);
    expect(iou(box(0, 0, 10, 10), box(10, 0, 20, 10))).toBe(0);
  });
  it('is intersection over union for partial overlap', () => {
    // 5x10 overlap = 50; union = 100 + 100 - 50
    expect(iou(box(0, 0, 10, 10), box(5, 0, 15, 10))).toBeCloseTo(50 / 150);
  });
  it('is 0 when a box is empty', () => {
    expect(iou(box(5, 5, 5, 5), box(0, 0, 10, 10))).toBe(0);
  });
});

describe('hardNms', () => {
  const boxes = [box(0, 0, 10, 10), box(1, 0, 11, 10), box(50, 50, 60, 60), box(0, 1, 10, 11)];
  it('keeps the best of each overlapping group, best first', () => {
    expect(hardNms(boxes, [0.8, 0.9, 0.7, 0.6], 0.3)).toEqual([1, 2]);
  });
  it('keeps boxes whose overlap is at most the threshold', () => {
    // IoU of boxes 0 and 1 is 90/110 = 0.82
    expect(hardNms(boxes.slice(0, 2), [0.9, 0.8], 0.85)).toEqual([0, 1]);
    expect(hardNms(boxes.slice(0, 2), [0.9, 0.8], 0.8)).toEqual([0]);
  });
  it('stops at the limit', () => {
    expect(hardNms(boxes, [0.8, 0.9, 0.7, 0.6], 0.3, 1)).toEqual([1]);
  });
});

/** Build UltraFace-shaped outputs from a list of priors. */
function outputs(priors: Array<{ p: number[]; b: [number, number, number, number] }>) {
  return {
    scores: Float32Array.from(priors.flatMap((x) => x.p)),
    boxes: Float32Array.from(priors.flatMap((x) => x.b)),
  };
}

describe('decodeUltraface', () => {
  const masked = classLayoutFromLabels(['background', 'face', 'masked_face']);
  const faceOnly = classLayoutFromLabels(['background', 'face']);
  const opts = { scoreThreshold: 0.7, iouThreshold: 0.3, maxFaces: 10 };

  it('scores a prior as p(face) + p(masked_face) and splits it into a mask score', () => {
    const { scores, boxes } = outputs([
      { p: [0.1, 0.3, 0.6], b: [0.1, 0.1, 0.2, 0.2] }, // face 0.9, masked share 2/3
      { p: [0.5, 0.3, 0.2], b: [0.5, 0.5, 0.6, 0.6] }, // face 0.5: below threshold
      { p: [0.05, 0.9, 0.05], b: [0.7, 0.1, 0.8, 0.2] }, // face 0.95, unmasked
    ]);
    const found = decodeUltraface(scores, boxes, masked, opts);
    expect(found).toHaveLength(2);
    expect(found[0]?.score).toBeCloseTo(0.95);
    expect(found[0]?.maskScore).toBeCloseTo(0.05 / 0.95);
    expect(found[1]?.score).toBeCloseTo(0.9);
    expect(found[1]?.maskScore).toBeCloseTo(0.6 / 0.9);
    expect(found[1]?.box.x1).toBeCloseTo(0.1);
    expect(found[1]?.box.y2).toBeCloseTo(0.2);
  });

  it('runs NMS across face and masked-face priors together', () => {
    const { scores, boxes } = outputs([
      { p: [0.1, 0.8, 0.1], b: [0.1, 0.1, 0.3, 0.3] },
      { p: [0.1, 0.1, 0.8], b: [0.11, 0.1, 0.31, 0.3] },
    ]);
    expect(decodeUltraface(scores, boxes, masked, opts)).toHaveLength(1);
  });

  it('gives face-only models a null mask score', () => {
    const { scores, boxes } = outputs([{ p: [0.2, 0.8], b: [0.1, 0.1, 0.2, 0.2] }]);
    const [only] = decodeUltraface(scores, boxes, faceOnly, opts);
    expect(only?.score).toBeCloseTo(0.8);
    expect(only?.maskScore).toBeNull();
  });

  it('keeps at most maxFaces, best first', () => {
    const priors = Array.from({ length: 5 }, (_, i) => ({
      p: [0.1 - i * 0.01, 0.9 + i * 0.01],
      b: [i * 0.2, 0, i * 0.2 + 0.1, 0.1] as [number, number, number, number],
    }));
    const { scores, boxes } = outputs(priors);
    const found = decodeUltraface(scores, boxes, faceOnly, { ...opts, maxFaces: 2 });
    expect(found.map((f) => f.box.x1)).toEqual([expect.closeTo(0.8), expect.closeTo(0.6)]);
  });

  it('rejects outputs whose sizes disagree', () => {
    expect(() => decodeUltraface(new Float32Array(9), new Float32Array(8), masked, opts)).toThrow(/disagree/);
  });

  it('needs a "face" label', () => {
    expect(() => classLayoutFromLabels(['background', 'person'])).toThrow(/"face"/);
  });
});

describe('planPlacement and toImageBox', () => {
  it('stretch without padding fills the input and maps corners to corners', () => {
    const p = planPlacement(1000, 500, 640, 480);
    expect(p).toMatchObject({ left: 0, top: 0, width: 640, height: 480 });
    expect(toImageBox(box(0, 0, 1, 1), p)).toEqual(box(0, 0, 1000, 500));
    const b = toImageBox(box(0.25, 0.5, 0.5, 1), p);
    expect([b.x1, b.y1, b.x2, b.y2]).toEqual([250, 250, 500, 500].map((v) => expect.closeTo(v, 9)));
  });

  it('letterbox keeps the aspect ratio and centres the image', () => {
    const p = planPlacement(1000, 500, 640, 480, { fit: 'letterbox' });
    expect(p).toMatchObject({ left: 0, top: 80, width: 640, height: 320 });
    // the middle of the input is the middle of the image
    const mid = toImageBox(box(0.5, 0.5, 0.5, 0.5), p);
    expect(mid.x1).toBeCloseTo(500);
    expect(mid.y1).toBeCloseTo(250);
  });

  it('padding puts the image on a canvas pad times its size and maps boxes back into the image', () => {
    const p = planPlacement(200, 100, 640, 480, { pad: 2, fit: 'letterbox' });
    // canvas 400x200 letterboxed into 640x480: scale 1.6, image 320x160 centred
    expect(p).toMatchObject({ left: 160, top: 160, width: 320, height: 160 });
    const modelBox = box(160 / 640, 160 / 480, 480 / 640, 320 / 480); // exactly the image
    const mapped = toImageBox(modelBox, p);
    expect(mapped.x1).toBeCloseTo(0);
    expect(mapped.y1).toBeCloseTo(0);
    expect(mapped.x2).toBeCloseTo(200);
    expect(mapped.y2).toBeCloseTo(100);
  });

  it('stretch with padding shrinks the image by the pad factor in both directions', () => {
    const p = planPlacement(200, 100, 640, 480, { pad: 2 });
    expect(p).toMatchObject({ left: 160, top: 120, width: 320, height: 240 });
  });

  it('clips boxes that reach into the padding', () => {
    const p = planPlacement(200, 100, 640, 480, { pad: 2 });
    expect(toImageBox(box(0, 0, 1, 1), p)).toEqual(box(0, 0, 200, 100));
  });

  it('rejects bad sizes and pads with a clear message', () => {
    expect(() => planPlacement(0, 10, 640, 480)).toThrow(/at least 1x1/);
    expect(() => planPlacement(10, 10, 640, 480, { pad: 0.5 })).toThrow(/pad must be a number >= 1/);
    expect(() => planPlacement(10, 10, 640, 480, { fit: 'cover' as never })).toThrow(/fit must be/);
  });
});

describe('fuseViews', () => {
  const face = (b: Box, score: number, maskScore: number | null): FaceDetection => ({
    box: b,
    score,
    maskScore,
    mask: maskScore === null ? 'unknown' : maskScore >= 0.5 ? 'mask' : 'no_mask',
  });

  it('merges overlapping faces across views, weighting mask scores by face score', () => {
    const fused = fuseViews(
      [
        [face(box(0, 0, 10, 10), 0.9, 0.2)],
        [face(box(1, 0, 11, 10), 0.6, 0.9), face(box(50, 50, 60, 60), 0.8, 0.1)],
      ],
      0.3,
    );
    expect(fused).toHaveLength(2);
    expect(fused[0]?.box).toEqual(box(0, 0, 10, 10));
    expect(fused[0]?.score).toBe(0.9);
    expect(fused[0]?.maskScore).toBeCloseTo((0.9 * 0.2 + 0.6 * 0.9) / 1.5);
    expect(fused[0]?.mask).toBe('no_mask'); // 0.48: the more confident view wins
    expect(fused[1]?.maskScore).toBeCloseTo(0.1);
  });

  it('keeps unknown for face-only detections and copes with empty views', () => {
    const fused = fuseViews([[], [face(box(0, 0, 10, 10), 0.9, null)]], 0.3);
    expect(fused).toEqual([face(box(0, 0, 10, 10), 0.9, null)]);
  });
});

describe('toNchwFloat', () => {
  const spec = { ...getManifest('ultraface-rfb-320').input, shape: [1, 3, 1, 2] as [1, 3, number, number] };
  it('normalises (pixel - 127) / 128 into planar RGB', () => {
    const rgb = Uint8Array.from([255, 127, 0, 63, 191, 127]); // two pixels
    const out = toNchwFloat(rgb, spec, new Float32Array(6));
    expect(Array.from(out)).toEqual([1, -0.5, 0, 0.5, -127 / 128, 0]);
  });
  it('rejects buffers of the wrong size', () => {
    expect(() => toNchwFloat(new Uint8Array(5), spec, new Float32Array(6))).toThrow(/expected 6 values/);
  });
});

describe('percentile', () => {
  it('uses nearest rank', () => {
    const v = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(v, 0.5)).toBe(50);
    expect(percentile(v, 0.95)).toBe(95);
    expect(percentile([3], 0.95)).toBe(3);
  });
});
