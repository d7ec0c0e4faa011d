/**
 * Edge profiles: what a class of box can keep up with, chosen by `profile:` in the agent config
 * (or env CHECKPOINT_EDGE_PROFILE). A profile only fills in defaults; anything the file sets
 * wins. The figures behind each choice are in packaging/PROFILES.md (measured here on x86 with
 * the thread counts below, and under qemu for arm64 correctness; the Pi/Jetson speeds are
 * estimates from the sources named there, not measurements on the boxes).
 */
export interface EdgeProfile {
  description: string;
  /** Smallest model that still tells masked from unmasked faces (the 320 models have no mask class). */
  model: string;
  /** The model's input, width x height; fixed by the ONNX file (checked against the manifest by a test). */
  inputSize: readonly [number, number];
  /** Frames processed at once by `replay` (a live camera delivers one at a time anyway). */
  framesInFlight: number;
  /** onnxruntime intra-op threads: leave one core for decoding, tracking, MQTT and the OS. */
  threads: number;
}

export const EDGE_PROFILES = {
  pi: {
    description: 'Raspberry Pi 4/5 (4 x Cortex-A72/A76, 4-8 GB): CPU inference, one core left for the rest',
    model: 'masked-face-640',
    inputSize: [640, 480],
    framesInFlight: 1,
    threads: 3,
  },
  jetson: {
    description: 'Jetson Orin Nano/NX (6 x Cortex-A78AE): CPU inference (onnxruntime-node ships no CUDA build for arm64)',
    model: 'masked-face-640',
    inputSize: [640, 480],
    framesInFlight: 2,
    threads: 4,
  },
} as const satisfies Record<string, EdgeProfile>;

export type EdgeProfileName = keyof typeof EDGE_PROFILES;
export const EDGE_PROFILE_NAMES = Object.keys(EDGE_PROFILES) as EdgeProfileName[];

/** The config defaults a profile stands for (merged under the file's own settings). */
export function profileDefaults(name: unknown): Record<string, unknown> {
  if (typeof name !== 'string' || !(name in EDGE_PROFILES)) return {};
  const p = EDGE_PROFILES[name as EdgeProfileName];
  return { model: { name: p.model, threads: p.threads, framesInFlight: p.framesInFlight } };
}
