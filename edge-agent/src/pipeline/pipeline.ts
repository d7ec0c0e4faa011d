/**
 * The screening pipeline, one frame pair at a time:
 *   detect faces (visible, or thermal-only) -> map each face into the thermal frame -> measure
 *   the canthus -> update the blackbody reference -> track -> decide once per person
 *   -> a validated `screening` payload (+ snapshot for decisions a guard must see).
 * Stages are the pure functions of thermometry/ and screening/; this class only keeps their
 * state between frames and times them. It does no network I/O: the agent hands its results to
 * the outbox, the replay command prints them.
 */
import { performance } from 'node:perf_hooks';
import { monotonicFactory } from 'ulid';
import { assertPayload, type ModelRef, type Screening } from '@checkpoint/protocol';
import sharp from 'sharp';
import type { FramePair, SceneGeometry, VisibleFrame } from '../frames.js';
import { addToBaseline, emptyBaseline, type Baseline } from '../thermometry/baseline.js';
import { boxArea, invertHomography, mapBox, scaleHomography, type Box } from '../geometry.js';
import { DEFAULT_MEASURE_OPTIONS, measureFace, type MeasureOptions } from '../thermometry/measure.js';
import {
  DEFAULT_REFERENCE_OPTIONS,
  initialReference,
  referenceUsable,
  updateReference,
  type ReferenceOptions,
  type ReferenceState,
} from '../thermometry/reference.js';
import { decideScreening, DEFAULT_DECISION_OPTIONS, type DecisionOptions, type ScreeningDecision } from '../screening/decision.js';
import {
  DEFAULT_TRACKER_OPTIONS,
  flushTracks,
  initialTrackerState,
  trackDetectedBy,
  updateTracks,
  type DetectedBy,
  type Observation,
  type Track,
  type TrackerOptions,
  type TrackerState,
} from '../screening/tracker.js';
import { DEFAULT_WARM_HEAD_OPTIONS, detectThermalFaces, findWarmHeads, type WarmHeadOptions } from './thermal-faces.js';
import { renderSnapshot } from './snapshot.js';
import { keepReferenceFace, type ReferenceFace } from './reference-faces.js';

/** What the pipeline needs from a face detector (vision/FaceDetector satisfies it). */
export interface FaceFinder {
  detect(
    image: Buffer | { data: Buffer; width: number; height: number },
    options?: { scoreThreshold?: number; padForDetection?: number },
  ): Promise<{
    faces: Array<{ box: Box; score: number; mask: 'mask' | 'no_mask' | 'unknown'; maskScore: number | null }>;
    timings: { decodeMs: number; preprocessMs: number; inferenceMs: number; postprocessMs: number };
  }>;
}

export type SnapshotPolicy = 'non-pass' | 'all' | 'never';

export interface PipelineOptions {
  site: string;
  checkpoint: string;
  model: ModelRef;
  decision: DecisionOptions;
  tracker: TrackerOptions;
  measure: MeasureOptions;
  reference: ReferenceOptions;
  thermalFaces: WarmHeadOptions;
  /**
   * Look for warm faces in every thermal frame and screen the ones the visible model misses
   * (`detectedBy: thermal`, mask unknown). Default true.
   */
  thermalFusion: boolean;
  /** Score given to a face only the thermal camera found (below confirmScore: thermal tracks confirm by frame count). */
  thermalOnlyScore: number;
  /**
   * Run the visible model again on a zoomed crop around each warm head it missed (small or far
   * faces): a face found there gets its mask state. Default true.
   */
  zoomRedetect: boolean;
  /** Minimum detector score for a face to be tracked; the tracker confirms persons at a higher score. */
  faceScoreThreshold: number;
  snapshots: SnapshotPolicy;
  snapshotQuality: number;
}

export const defaultPipelineOptions = (site: string, checkpoint: string, model: ModelRef): PipelineOptions => ({
  site,
  checkpoint,
  model,
  decision: DEFAULT_DECISION_OPTIONS,
  tracker: DEFAULT_TRACKER_OPTIONS,
  measure: DEFAULT_MEASURE_OPTIONS,
  reference: DEFAULT_REFERENCE_OPTIONS,
  thermalFaces: DEFAULT_WARM_HEAD_OPTIONS,
  thermalFusion: true,
  thermalOnlyScore: 0.5,
  zoomRedetect: true,
  faceScoreThreshold: 0.3,
  snapshots: 'non-pass',
  snapshotQuality: 80,
});

export interface ScreeningResult {
  screening: Screening;
  /** Source frame numbers the decision was made from. */
  replayFrames: [number, number];
  /** The track's last face box (visible pixels; thermal when there is no visible camera) and its frame. */
  where: { seq: number; box: Box };
  snapshot: Buffer | null;
}

/** Per-frame stage times, ms. */
export interface StageTimings {
  decode: number;
  preprocess: number;
  inference: number;
  postprocess: number;
  thermometry: number;
  decision: number;
}

/** What face detection hands to thermometry for one frame. */
interface DetectedFaces {
  faces: Array<{
    box: Box;
    thermalBox: Box;
    score: number;
    mask: Observation['mask'];
    maskScore: number | null;
    detectedBy: DetectedBy;
    /** The box the tracker follows: the warm head's (steadier than the detector's) when there is one. */
    trackBox?: Box;
    /** `box` is the full-frame detector's own (not a warm head's, not from a zoomed crop). */
    fromFullFrame?: boolean;
  }>;
  timings: Pick<StageTimings, 'decode' | 'preprocess' | 'inference' | 'postprocess'>;
}

/** The frame a track's best look came from, kept for its snapshot. */
interface Evidence {
  pair: FramePair;
  visibleBox: Box | null;
  thermalBox: Box;
  spot: { x: number; y: number } | null;
  faceScore: number;
}

/**
 * Frames in flight when recorded frames are processed as fast as possible (`edge-agent replay`,
 * the benchmarks). sharp decodes each image on one libuv thread and decoding is the longer stage
 * (about 9 ms for a 1024x768 JPEG against 7.5 ms of inference on 2 cores), so with three in flight
 * two frames decode while the model runs on the third. On a 2-core box (scene photos,
 * masked-face-640) that measured 77 frames/s against 64 with two and 47 with one; four gained
 * nothing. A live source delivers slower than the pipeline runs and uses `process` one by one.
 */
export const FAST_FRAMES_IN_FLIGHT = 3;

export class ScreeningPipeline {
  private reference: ReferenceState;
  private tracks: TrackerState = initialTrackerState();
  private baseline: Baseline = emptyBaseline;
  private readonly evidence = new Map<number, Evidence>();
  private readonly newId = monotonicFactory();
  /** Stage times of the last processed frame. */
  lastTimings: StageTimings = { decode: 0, preprocess: 0, inference: 0, postprocess: 0, thermometry: 0, decision: 0 };
  framesProcessed = 0;

  constructor(
    readonly geometry: SceneGeometry,
    private detector: FaceFinder | null,
    readonly options: PipelineOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.reference = initialReference(geometry.blackbody);
  }

  get referenceState(): ReferenceState {
    return this.reference;
  }

  /**
   * Recent visible frames in which the detector found a confident face, kept in memory only
   * (never written): a new model's self-test must find those faces too.
   */
  recentConfidentFaces: ReferenceFace[] = [];

  /**
   * Switches to another detector between two frames (a model update): tracks, baseline and
   * reference carry on, so no person and no frame is lost. Returns the previous detector.
   */
  swapDetector(next: FaceFinder, model: ModelRef): FaceFinder | null {
    const previous = this.detector;
    this.detector = next;
    this.options.model = model;
    return previous;
  }

  /** Applies new thresholds/policies (a `set-config` command) without losing tracks or baseline. */
  updateOptions(patch: Partial<Pick<PipelineOptions, 'decision' | 'snapshots'>>): void {
    Object.assign(this.options, patch);
  }

  /** One frame through every stage. */
  async process(pair: FramePair): Promise<ScreeningResult[]> {
    return this.afterDetection(pair, await this.detectFaces(pair));
  }

  /**
   * Frames in, one result list per frame out, in order. With `depth` > 1 the next frames' face
   * detection starts before this frame's is done, so that decoding (sharp, libuv threads)
   * overlaps inference (onnxruntime threads): the replay and the bench use
   * FAST_FRAMES_IN_FLIGHT; a live source, which delivers slower than the pipeline runs, gains
   * nothing but latency. Tracking and decisions still see the frames strictly in order.
   */
  async *processAll(frames: AsyncIterable<FramePair>, depth = 1): AsyncIterable<ScreeningResult[]> {
    const inflight: Array<{ pair: FramePair; detected: Promise<DetectedFaces> }> = [];
    for await (const pair of frames) {
      const detected = this.detectFaces(pair);
      detected.catch(() => undefined); // awaited below, in order
      inflight.push({ pair, detected });
      if (inflight.length < depth) continue;
      const next = inflight.shift()!;
      yield await this.afterDetection(next.pair, await next.detected);
    }
    for (const next of inflight) yield await this.afterDetection(next.pair, await next.detected);
  }

  /**
   * Stage 1: faces in the visible frame when there is one, fused with warm heads in the thermal
   * frame (a warm head no visible face covers is a face the model missed); without a visible
   * camera, warm regions in the thermal frame.
   */
  private async detectFaces(pair: FramePair): Promise<DetectedFaces> {
    const { thermal, visible } = pair;
    if (visible && this.detector) {
      let found;
      try {
        found = await this.detector.detect(visible.encoded, { scoreThreshold: this.options.faceScoreThreshold });
      } catch (err) {
        throw new Error(`${visible.origin ?? `visible frame ${visible.seq}`}: ${(err as Error).message}`, { cause: err });
      }
      const h = this.geometry.homography ?? scaleHomography(visible, thermal);
      // A small box mostly inside a bigger one is a part of that face (an eye region), not a person.
      const whole = found.faces.filter((f) => !found.faces.some((g) => g !== f && boxArea(g.box) > 2 * boxArea(f.box) && insideShare(f.box, g.box) >= 0.6));
      const faces: DetectedFaces['faces'] = whole.map((f) => ({ ...f, thermalBox: mapBox(h, f.box), detectedBy: 'visible', fromFullFrame: true }));
      const s = performance.now();
      if (this.options.thermalFusion) {
        const inverse = this.inverseHomography(h);
        const unseen: Box[] = [];
        const heads = findWarmHeads(thermal, this.geometry.blackbody, this.options.thermalFaces);
        for (const head of heads) {
          const seen = faces.filter((f) => f.detectedBy !== 'thermal' && covers(f.thermalBox, head));
          const expected = applyHeadToFace(this.headToFace, mapBox(inverse, head));
          for (const f of seen) {
            f.detectedBy = 'both';
            // The detector sometimes boxes a part of a face (an eye region a quarter of its width):
            // the warm head says how big the face is, for tracking and for the measurement.
            if (seen.length === 1 && f.box.x2 - f.box.x1 < 0.5 * (expected.x2 - expected.x1)) {
              f.box = expected;
              f.thermalBox = head;
              f.fromFullFrame = false;
            }
          }
          if (seen.length === 1 && f0(seen).box !== expected) this.headToFace = learnHeadToFace(this.headToFace, mapBox(inverse, head), f0(seen).box);
          // Detector boxes of one face vary in size from frame to frame (a part of the face, then
          // all of it); the warm head's width does not, which keeps the motion model steady.
          if (seen.length === 1) f0(seen).trackBox = applyHeadToFace(this.headToFace, mapBox(inverse, head));
          // A warm region right under a face is that person's neck or chin (a mask cuts it off).
          const under = (f: Box): boolean => f !== head && belowFace(f, head);
          if (seen.length === 0 && !faces.some((f) => under(f.thermalBox)) && !heads.some(under)) unseen.push(head);
        }
        for (const head of unseen) {
          // In the visible detector's terms, so that a track can mix both kinds of box.
          const box = applyHeadToFace(this.headToFace, mapBox(inverse, head));
          const zoomed = this.options.zoomRedetect ? await this.redetect(visible, mapBox(inverse, head)) : null;
          if (zoomed) {
            // The zoom found a face the full frame already has: this warm region is part of that
            // person (a neck, a chin under a mask), not somebody else.
            if (faces.some((f) => f.detectedBy !== 'thermal' && covers(f.box, zoomed.box))) continue;
            faces.push({ ...zoomed, thermalBox: mapBox(h, zoomed.box), detectedBy: 'both', trackBox: box });
            continue;
          }
          faces.push({ box, thermalBox: head, score: this.options.thermalOnlyScore, mask: 'unknown', maskScore: null, detectedBy: 'thermal' });
        }
      }
      return {
        faces,
        timings: { decode: found.timings.decodeMs, preprocess: found.timings.preprocessMs, inference: found.timings.inferenceMs, postprocess: found.timings.postprocessMs + performance.now() - s },
      };
    }
    const s = performance.now();
    const faces = detectThermalFaces(thermal, this.geometry.blackbody, this.options.thermalFaces).map((box) => ({
      box,
      thermalBox: box,
      score: 1,
      mask: 'unknown' as const,
      maskScore: null,
      detectedBy: 'thermal' as const,
    }));
    return { faces, timings: { decode: 0, preprocess: 0, inference: 0, postprocess: performance.now() - s } };
  }

  /**
   * The visible model on a crop around a warm head (2.5 times its size, at least 128 px): a small
   * face fills more of the model's input there. Returns the best face in frame pixels, or null.
   */
  private async redetect(visible: VisibleFrame, head: Box): Promise<{ box: Box; score: number; mask: Observation['mask']; maskScore: number | null } | null> {
    if (!this.detector) return null;
    const side = Math.max(128, 2.5 * Math.max(head.x2 - head.x1, head.y2 - head.y1));
    const cx = (head.x1 + head.x2) / 2;
    const cy = (head.y1 + head.y2) / 2;
    const left = Math.max(0, Math.round(cx - side / 2));
    const top = Math.max(0, Math.round(cy - side / 2));
    const width = Math.min(visible.width - left, Math.round(side));
    const height = Math.min(visible.height - top, Math.round(side));
    if (width < 16 || height < 16) return null;
    let crop: { data: Buffer; info: { width: number; height: number } };
    try {
      crop = await sharp(visible.encoded).extract({ left, top, width, height }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    } catch {
      return null; // the full frame decoded for the detector; a crop failing here only loses the zoom
    }
    const found = await this.detector.detect({ data: crop.data, width: crop.info.width, height: crop.info.height }, { scoreThreshold: this.options.tracker.confirmScore, padForDetection: 2 });
    const best = found.faces.sort((a, b) => b.score - a.score)[0];
    if (!best) return null;
    const box = { x1: best.box.x1 + left, y1: best.box.y1 + top, x2: best.box.x2 + left, y2: best.box.y2 + top };
    // Only a face over the warm head counts (not another one at the crop's edge).
    return covers(box, head) ? { box, score: best.score, mask: best.mask, maskScore: best.maskScore } : null;
  }

  private inverse: { of: readonly number[]; inverse: number[] } | null = null;
  /** How the visible detector's box sits on a warm head's box, learnt from faces both cameras found. */
  private headToFace: HeadToFace = IDENTITY_HEAD_TO_FACE;
  private inverseHomography(h: readonly number[]): number[] {
    if (this.inverse?.of !== h) this.inverse = { of: h, inverse: invertHomography(h) };
    return this.inverse.inverse;
  }

  /** Stages 2 and 3, strictly in frame order: thermometry, tracking, decisions. */
  private async afterDetection(pair: FramePair, detected: DetectedFaces): Promise<ScreeningResult[]> {
    const t = this.lastTimings;
    const { thermal, visible } = pair;
    const { faces } = detected;
    Object.assign(t, detected.timings);
    this.framesProcessed++;
    // A new model's self-test looks for this face in the whole frame: only the detector's own boxes.
    const best = visible ? faces.find((f) => f.fromFullFrame && f.score >= this.options.tracker.confirmScore) : undefined;
    if (visible && best) keepReferenceFace(this.recentConfidentFaces, { encoded: visible.encoded, box: best.box, atMs: thermal.timestampMs });

    // 2. Thermometry: reference first (its offset applies to this frame), then each face.
    const s2 = performance.now();
    this.reference = updateReference(this.reference, thermal, this.geometry.blackbody, this.options.reference);
    const usable = referenceUsable(this.reference);
    // Only confident faces whose thermal regions overlap make a reading ambiguous; a low-score
    // blip beside a person, or a second person standing apart in a queue, does not.
    const confident = faces.filter((g) => g.score >= this.options.tracker.confirmScore);
    const observations: Observation[] = faces.map((f) => ({
      seq: thermal.seq,
      timestampMs: thermal.timestampMs,
      box: f.trackBox ?? f.box,
      faceScore: f.score,
      mask: f.mask,
      maskScore: f.maskScore,
      detectedBy: f.detectedBy,
      atEdge: atEdge(f.box, visible ?? thermal),
      facesInFrame: Math.max(1, confident.filter((g) => g === f || covers(g.thermalBox, f.thermalBox)).length),
      measurement: measureFace(thermal, f.thermalBox, this.options.measure),
      referenceOffsetC: usable ? this.reference.offsetC : null,
      referenceMeasuredC: usable ? this.reference.measuredC : null,
    }));
    t.thermometry = performance.now() - s2;

    // 3. Tracking and decisions.
    const s3 = performance.now();
    const update = updateTracks(this.tracks, observations, this.options.tracker, visible ?? thermal);
    this.tracks = update.state;
    this.keepEvidence(pair, faces, observations);
    const results = await this.decideAll(update.toDecide);
    this.forgetEndedTracks();
    t.decision = performance.now() - s3;
    return results;
  }

  /** End of stream: decide every pending track. */
  async finish(): Promise<ScreeningResult[]> {
    const update = flushTracks(this.tracks, this.options.tracker);
    this.tracks = update.state;
    const results = await this.decideAll(update.toDecide);
    this.evidence.clear();
    return results;
  }

  private keepEvidence(pair: FramePair, faces: Array<{ box: Box; thermalBox: Box; score: number }>, observations: Observation[]): void {
    for (const track of this.tracks.active) {
      if (track.decided || track.missed > 0) continue;
      const last = track.observations[track.observations.length - 1]!;
      const index = observations.indexOf(last);
      if (index < 0) continue;
      const best = this.evidence.get(track.id);
      if (!best || faces[index]!.score >= best.faceScore) {
        const m = last.measurement;
        this.evidence.set(track.id, {
          pair,
          visibleBox: pair.visible ? faces[index]!.box : null,
          thermalBox: faces[index]!.thermalBox,
          spot: m.ok ? m.spot : null,
          faceScore: faces[index]!.score,
        });
      }
    }
  }

  private forgetEndedTracks(): void {
    const live = new Set(this.tracks.active.filter((t) => !t.decided).map((t) => t.id));
    for (const id of this.evidence.keys()) if (!live.has(id)) this.evidence.delete(id);
  }

  private async decideAll(tracks: Track[]): Promise<ScreeningResult[]> {
    const results: ScreeningResult[] = [];
    for (const track of tracks) results.push(await this.decide(track));
    return results;
  }

  private async decide(track: Track): Promise<ScreeningResult> {
    const started = performance.now();
    const d = decideScreening(track.observations, { ambientC: this.geometry.ambientC, baseline: this.baseline }, this.options.decision);
    if (d.baselineSample !== null) this.baseline = addToBaseline(this.baseline, d.baselineSample, this.options.decision.baseline);
    const id = this.newId(this.now());
    const wantsSnapshot =
      this.options.snapshots === 'all' || (this.options.snapshots === 'non-pass' && d.decision !== 'pass');
    const evidence = this.evidence.get(track.id);
    const snapshot =
      wantsSnapshot && evidence
        ? await renderSnapshot(evidence.pair, evidence.visibleBox, evidence.thermalBox, evidence.spot, this.options.snapshotQuality)
        : null;
    const first = track.observations[0]!;
    const last = track.observations[track.observations.length - 1]!;
    const screening = assertPayload('screening', this.toPayload(id, track, d, snapshot !== null, last.timestampMs - first.timestampMs + (performance.now() - started)));
    return { screening, replayFrames: [d.firstSeq, d.lastSeq], where: { seq: last.seq, box: last.box }, snapshot };
  }

  private toPayload(id: string, track: Track, d: ScreeningDecision, snapshot: boolean, latencyMs: number): Screening {
    const setC = this.geometry.blackbody?.setC;
    return {
      id,
      ts: new Date(this.now()).toISOString(),
      site: this.options.site,
      checkpoint: this.options.checkpoint,
      trackId: track.id,
      temperatureC: d.temperatureC,
      method: d.method,
      blackbody: d.blackbody && setC !== undefined ? { setC, measuredC: d.blackbody.measuredC, offsetC: d.blackbody.offsetC } : null,
      ambientC: this.geometry.ambientC,
      mask: d.mask,
      maskScore: d.maskScore,
      faceScore: d.faceScore,
      decision: d.decision,
      reasons: d.reasons,
      thresholdC: d.thresholdC,
      mode: d.mode,
      frames: d.frames,
      latencyMs: Math.round(Math.max(0, latencyMs)),
      model: this.options.model,
      snapshot,
      detectedBy: trackDetectedBy(track.observations),
    };
  }
}

/** A visible face box relative to the warm head box of the same face (offsets and sizes in head widths). */
export interface HeadToFace {
  dx: number;
  dy: number;
  sw: number;
  sh: number;
}

export const IDENTITY_HEAD_TO_FACE: HeadToFace = { dx: 0, dy: 0, sw: 1, sh: 1.15 };

/** Moves the head-to-face relation a little toward one observed pair (exponential average). */
export function learnHeadToFace(current: HeadToFace, head: Box, face: Box, rate = 0.1): HeadToFace {
  const w = head.x2 - head.x1;
  if (w <= 0) return current;
  const seen = { dx: (face.x1 - head.x1) / w, dy: (face.y1 - head.y1) / w, sw: (face.x2 - face.x1) / w, sh: (face.y2 - face.y1) / w };
  return {
    dx: current.dx + rate * (seen.dx - current.dx),
    dy: current.dy + rate * (seen.dy - current.dy),
    sw: current.sw + rate * (seen.sw - current.sw),
    sh: current.sh + rate * (seen.sh - current.sh),
  };
}

export function applyHeadToFace(r: HeadToFace, head: Box): Box {
  const w = head.x2 - head.x1;
  const x1 = head.x1 + r.dx * w;
  const y1 = head.y1 + r.dy * w;
  return { x1, y1, x2: x1 + r.sw * w, y2: y1 + r.sh * w };
}

/** Whether a face box touches the frame border (a face partly out of the picture). */
function atEdge(box: Box, frame: { width: number; height: number }): boolean {
  const m = 0.01 * frame.width;
  return box.x1 <= m || box.y1 <= m || box.x2 >= frame.width - m || box.y2 >= frame.height - m;
}

const f0 = <T>(list: T[]): T => list[0]!;

/**
 * Whether `part`'s centre lies under `face`, within one and a half face widths (a neck, a chin
 * under a mask; widths because a masked face's warm region is only its upper half).
 */
function belowFace(face: Box, part: Box): boolean {
  const cx = (part.x1 + part.x2) / 2;
  const cy = (part.y1 + part.y2) / 2;
  return cx >= face.x1 && cx <= face.x2 && cy > (face.y1 + face.y2) / 2 && cy <= face.y2 + 1.5 * (face.x2 - face.x1);
}

/** Share of `inner`'s area inside `outer`. */
function insideShare(inner: Box, outer: Box): number {
  const inter = boxArea({ x1: Math.max(inner.x1, outer.x1), y1: Math.max(inner.y1, outer.y1), x2: Math.min(inner.x2, outer.x2), y2: Math.min(inner.y2, outer.y2) });
  return inter / Math.max(1e-9, boxArea(inner));
}

/** Whether two face regions are the same face: their overlap covers a good part of the smaller one. */
function covers(a: Box, b: Box): boolean {
  const inter = boxArea({ x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1), x2: Math.min(a.x2, b.x2), y2: Math.min(a.y2, b.y2) });
  return inter > 0 && inter >= 0.3 * Math.min(boxArea(a), boxArea(b));
}
