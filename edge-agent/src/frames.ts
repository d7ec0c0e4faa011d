/**
 * The data that flows between the edge agent's pipeline stages.
 *
 * Sources produce frames; vision, thermometry and the tracker consume them. Every frame carries
 * the source's own sequence number and capture time, so a decision can say which frames it came
 * from (replay prints them as `replayFrames`).
 */

/** A radiometric thermal frame: one apparent temperature in °C per pixel, row-major. */
export interface ThermalFrame {
  /** Source's frame number, 1-based and increasing. */
  seq: number;
  /** Capture time in ms (epoch for live sources, (seq-1)/fps*1000 for replays). */
  timestampMs: number;
  width: number;
  height: number;
  /** width * height temperatures in °C. */
  celsius: Float32Array;
  /** Sensor's own ambient/die temperature when it reports one (MLX90640 Ta), °C. */
  sensorAmbientC?: number;
}

/** A visible-light frame, kept encoded until a stage needs pixels (decoding costs). */
export interface VisibleFrame {
  seq: number;
  timestampMs: number;
  width: number;
  height: number;
  /** Encoded image bytes (JPEG or PNG), as the camera or file delivered them. */
  encoded: Buffer;
  /** Where the frame came from (a replay file), named in errors about it. */
  origin?: string;
}

/** The thermal and (optional) visible frame of one instant. */
export interface FramePair {
  thermal: ThermalFrame;
  visible: VisibleFrame | null;
}

/** Blackbody reference region in thermal pixels and its set point. */
export interface BlackbodyRegion {
  x: number;
  y: number;
  w: number;
  h: number;
  setC: number;
}

/**
 * What the pipeline must know about a camera pair besides its pixels: the geometry that maps
 * visible pixels to thermal pixels, where the blackbody is, and the ambient temperature.
 * Replays read it from meta.json; live sources from the agent's config.
 */
export interface SceneGeometry {
  fps: number;
  thermal: { width: number; height: number };
  visible: { width: number; height: number } | null;
  /** Row-major 3x3 homography mapping visible (x, y, 1) to thermal pixel coordinates. */
  homography: number[] | null;
  blackbody: BlackbodyRegion | null;
  ambientC: number | null;
}

/** A source of frame pairs. Iterating starts capture; `close()` releases the device. */
export interface FrameSource {
  readonly geometry: SceneGeometry;
  frames(signal?: AbortSignal): AsyncIterable<FramePair>;
  close(): Promise<void>;
}

/** Thermal-only stream (serial boards, Y16 pipes) before it is paired with a visible camera. */
export interface ThermalSource {
  frames(signal?: AbortSignal): AsyncIterable<ThermalFrame>;
  close(): Promise<void>;
}

export const KELVIN_OFFSET = 273.15;
