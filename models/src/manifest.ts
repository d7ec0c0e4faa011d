/**
 * Model manifests: everything the project needs to know about a pretrained model without
 * opening it. The fetcher uses url/sha256/size; the edge agent's vision stage uses the input
 * and output specs to preprocess and decode. Models are never committed: they are fetched from
 * `url` or copied from a mirror folder, and verified against `sha256`.
 */

export interface ModelInputSpec {
  name: string;
  /** NCHW shape, batch first. */
  shape: [1, 3, number, number];
  layout: 'NCHW';
  colorOrder: 'RGB';
  /** Per-channel normalisation: value = (pixel - mean) / std, pixel in 0..255. */
  mean: [number, number, number];
  std: [number, number, number];
}

export interface ModelOutputSpec {
  name: string;
  shape: number[];
  description: string;
}

export interface ModelManifest {
  /** Stable id used on the command line, in config and in the screening payload. */
  name: string;
  version: string;
  task: 'face-detection' | 'masked-face-detection';
  /** Upstream download URL (raw file). */
  url: string;
  /** File name in the models folder and in a mirror. */
  file: string;
  sha256: string;
  sizeBytes: number;
  license: string;
  source: string;
  input: ModelInputSpec;
  outputs: ModelOutputSpec[];
  /**
   * How to turn outputs into detections: UltraFace emits softmax scores per prior and boxes
   * already decoded to normalised corners (x1, y1, x2, y2); upstream follows with hard NMS.
   */
  decoding: { kind: 'ultraface'; boxes: 'corner-normalised'; nmsIouThreshold: number; scoreThreshold: number };
  /** Class labels, index = position in the scores vector. */
  labels: string[];
}

const UPSTREAM =
  'https://raw.githubusercontent.com/Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB/master/';

const ultrafaceInput = (width: number, height: number): ModelInputSpec => ({
  name: 'input',
  shape: [1, 3, height, width],
  layout: 'NCHW',
  colorOrder: 'RGB',
  mean: [127, 127, 127],
  std: [128, 128, 128],
});

const ultrafaceOutputs = (priors: number, classes: number): ModelOutputSpec[] => [
  { name: 'scores', shape: [1, priors, classes], description: 'softmax class probabilities per prior' },
  { name: 'boxes', shape: [1, priors, 4], description: 'x1, y1, x2, y2 normalised to 0..1 per prior' },
];

const common = {
  version: 'v2',
  license: 'MIT',
  source: 'Linzaer/Ultra-Light-Fast-Generic-Face-Detector-1MB',
  decoding: { kind: 'ultraface', boxes: 'corner-normalised', nmsIouThreshold: 0.3, scoreThreshold: 0.7 },
} as const;

export const MODELS: readonly ModelManifest[] = [
  {
    ...common,
    name: 'masked-face-640',
    task: 'masked-face-detection',
    url: `${UPSTREAM}masked_face/pretrained/RFB-640-masked_face-v2.onnx`,
    file: 'RFB-640-masked_face-v2.onnx',
    sha256: '27ca3e5985f722e91efea7993f625716de627303c4bafb40bb26f456286beca8',
    sizeBytes: 1566571,
    input: ultrafaceInput(640, 480),
    outputs: ultrafaceOutputs(17640, 3),
    labels: ['background', 'face', 'masked_face'],
  },
  {
    ...common,
    name: 'masked-face-1280',
    task: 'masked-face-detection',
    url: `${UPSTREAM}masked_face/pretrained/RFB-1280-masked_face-v2.onnx`,
    file: 'RFB-1280-masked_face-v2.onnx',
    sha256: '7514455d81b120120c93a145f579448416ee25d7aa925fe2431bf1552b692b50',
    sizeBytes: 2835212,
    input: ultrafaceInput(1280, 960),
    outputs: ultrafaceOutputs(70500, 3),
    labels: ['background', 'face', 'masked_face'],
  },
  {
    ...common,
    version: 'v1',
    name: 'ultraface-rfb-320',
    task: 'face-detection',
    url: `${UPSTREAM}models/onnx/version-RFB-320.onnx`,
    file: 'version-RFB-320.onnx',
    sha256: '34cd7e60aeff28744c657de7a3dc64e872d506741de66987f3426f2b79f88017',
    sizeBytes: 1270727,
    input: ultrafaceInput(320, 240),
    outputs: ultrafaceOutputs(4420, 2),
    labels: ['background', 'face'],
  },
  {
    ...common,
    version: 'v1',
    name: 'ultraface-slim-320',
    task: 'face-detection',
    url: `${UPSTREAM}models/onnx/version-slim-320.onnx`,
    file: 'version-slim-320.onnx',
    sha256: 'e9adbd0f920ddcce9368434c4d34d72520dc0c19b526fd44b4ef49bde2c3b1a8',
    sizeBytes: 1195330,
    input: ultrafaceInput(320, 240),
    outputs: ultrafaceOutputs(4420, 2),
    labels: ['background', 'face'],
  },
];

/** The agent's default: finds faces and tells masked from unmasked in one pass. */
export const DEFAULT_MODEL = 'masked-face-640';

export function getManifest(name: string): ModelManifest {
  const found = MODELS.find((m) => m.name === name);
  if (!found) {
    throw new Error(`unknown model "${name}"; known models: ${MODELS.map((m) => m.name).join(', ')}`);
  }
  return found;
}
