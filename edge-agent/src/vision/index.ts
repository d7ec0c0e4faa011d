/** The edge agent's vision stage: ONNX face + mask detection on visible images. */
export { FaceDetector, checkSessionMatchesManifest, type FaceDetectorOptions } from './detector.js';
export {
  classifyImages,
  detectMultiScale,
  DEFAULT_CLASSIFY_OPTIONS,
  type ClassifyOptions,
  type ClassifyResult,
} from './classify.js';
export { runVisionBench, percentile, type VisionBenchOptions, type VisionBenchResult, type Spread } from './bench.js';
export { planPlacement, toImageBox, type Placement, type PlacementOptions } from './geometry.js';
export { iou, boxArea } from '../geometry.js';
export {
  decodeUltraface,
  hardNms,
  fuseViews,
  maskState,
  classLayoutFromLabels,
  type ClassLayout,
  type ModelDetection,
  type DecodeOptions,
} from './postprocess.js';
export { loadForModel, toNchwFloat, inputSize, NEUTRAL_BACKGROUND } from './preprocess.js';
export type * from './types.js';
