/**
 * One screening decision from one track (pure). The rules follow IEC 80601-2-59 practice
 * (reference/thermal-screening.md): the reading is the median of several frames' inner-canthus
 * temperatures corrected by the blackbody; without a usable reference the agent either works
 * relative to a running baseline or says `invalid` — it never reports a bare number as absolute.
 */
import type { Decision, MaskState, Reason, ScreeningMode } from '@checkpoint/protocol';
import { baselineValue, type Baseline, type BaselineOptions } from '../thermometry/baseline.js';
import { correctEmissivity } from '../thermometry/measure.js';
import type { Observation } from './tracker.js';

export interface DecisionOptions {
  /** Absolute alarm threshold, °C (0.1 °C steps). */
  thresholdC: number;
  /** What to do without a usable blackbody: relative baseline, or refuse (`invalid`). */
  noReference: 'relative' | 'invalid';
  baseline: BaselineOptions;
  /** Skin emissivity; readings are corrected from the camera's emissivity-1 temperatures. */
  emissivity: number;
  /** Below this corrected reading the person is too cold to screen (just in from outside). */
  minPlausibleC: number;
  /** Above this the reading is not skin (hot drink, heater, sun-warmed). */
  maxPlausibleC: number;
  /** `report`: mask state is published only; `require`: no mask also asks for a check. */
  maskPolicy: 'report' | 'require';
  /** Share of frames with more than one face that makes the reading ambiguous. */
  multipleFacesShare: number;
}

export const DEFAULT_DECISION_OPTIONS: DecisionOptions = {
  thresholdC: 37.3,
  noReference: 'relative',
  baseline: { samples: 10, minSamples: 5, alarmOffsetC: 1.0 },
  emissivity: 0.98,
  minPlausibleC: 34.5,
  maxPlausibleC: 42.5,
  maskPolicy: 'report',
  multipleFacesShare: 0.5,
};

export interface DecisionContext {
  ambientC: number | null;
  baseline: Baseline;
}

export interface ScreeningDecision {
  decision: Decision;
  reasons: Reason[];
  temperatureC: number | null;
  method: 'canthus' | 'face-max' | null;
  mode: ScreeningMode;
  thresholdC: number;
  mask: MaskState;
  maskScore: number | null;
  faceScore: number;
  blackbody: { measuredC: number; offsetC: number } | null;
  /** Frames the decision was made from. */
  frames: number;
  firstSeq: number;
  lastSeq: number;
  /** A reading to add to the relative baseline (passes only). */
  baselineSample: number | null;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
const round1 = (v: number): number => Math.round(v * 10) / 10;
const round2 = (v: number): number => Math.round(v * 100) / 100;

function maskVote(observations: Observation[]): { mask: MaskState; maskScore: number | null } {
  const scores = observations.map((o) => o.maskScore).filter((s): s is number => s !== null);
  if (scores.length === 0) return { mask: 'unknown', maskScore: null };
  const score = mean(scores);
  return { mask: score >= 0.5 ? 'mask' : 'no_mask', maskScore: round2(score) };
}

export function decideScreening(
  observations: Observation[],
  context: DecisionContext,
  options: DecisionOptions = DEFAULT_DECISION_OPTIONS,
): ScreeningDecision {
  if (observations.length === 0) throw new Error('decideScreening needs at least one observation');
  const { mask, maskScore } = maskVote(observations);
  const base = {
    mask,
    maskScore,
    faceScore: round2(Math.min(1, mean(observations.map((o) => o.faceScore)))),
    frames: observations.length,
    firstSeq: observations[0]!.seq,
    lastSeq: observations[observations.length - 1]!.seq,
    baselineSample: null,
  };
  const invalid = (reasons: Reason[], mode: ScreeningMode = 'absolute'): ScreeningDecision => ({
    ...base,
    decision: 'invalid',
    reasons,
    temperatureC: null,
    method: null,
    mode,
    thresholdC: options.thresholdC,
    blackbody: null,
  });

  const crowded = observations.filter((o) => o.facesInFrame > 1).length;
  if (crowded / observations.length >= options.multipleFacesShare) return invalid(['multiple_faces']);

  const read = observations.filter((o) => o.measurement.ok);
  if (read.length === 0) {
    // Seen but not measurable: one cannot_screen for the person, so a guard looks at them.
    const small = observations.some((o) => !o.measurement.ok && o.measurement.reason === 'face_too_small');
    const mode: ScreeningMode = observations.some((o) => o.referenceOffsetC !== null) ? 'absolute' : 'relative';
    return { ...invalid([small ? 'face_too_small' : 'no_thermal_face'], mode), decision: 'cannot_screen' };
  }
  const apparent = (o: Observation): number => (o.measurement.ok ? o.measurement.apparentC : NaN);
  const method = read.filter((o) => o.measurement.ok && o.measurement.method === 'canthus').length * 2 >= read.length ? 'canthus' : 'face-max';
  const reflectedC = context.ambientC ?? 22;
  const skin = (apparentC: number): number => correctEmissivity(apparentC, options.emissivity, reflectedC);

  // Absolute mode when most frames had a usable reference.
  const referenced = read.filter((o) => o.referenceOffsetC !== null);
  let mode: ScreeningMode;
  let temperatureC: number;
  let alarmC: number;
  let blackbody: ScreeningDecision['blackbody'] = null;
  if (referenced.length * 2 > read.length) {
    mode = 'absolute';
    temperatureC = median(referenced.map((o) => skin(apparent(o) + o.referenceOffsetC!)));
    alarmC = options.thresholdC;
    const last = referenced[referenced.length - 1]!;
    blackbody = { measuredC: round2(last.referenceMeasuredC!), offsetC: round2(last.referenceOffsetC!) };
  } else {
    if (options.noReference === 'invalid') return invalid(['no_reference']);
    mode = 'relative';
    const baseline = baselineValue(context.baseline, options.baseline);
    temperatureC = median(read.map((o) => skin(apparent(o))));
    if (baseline === null) {
      // Still learning the baseline: the reading feeds it but no decision is possible yet.
      return { ...invalid(['no_reference'], 'relative'), baselineSample: temperatureC };
    }
    alarmC = baseline + options.baseline.alarmOffsetC;
  }

  const reported = round2(temperatureC);
  const result = { ...base, temperatureC: reported, method, mode, thresholdC: round1(alarmC), blackbody } as const;
  if (temperatureC < options.minPlausibleC) return { ...result, decision: 'invalid', reasons: ['too_cold_retry'] };
  if (temperatureC > options.maxPlausibleC) return { ...result, decision: 'invalid', reasons: ['too_hot_ambient'] };

  const reasons: Reason[] = [];
  // Compare at display resolution so that the guard never sees 37.3 flagged against 37.3.
  if (round1(temperatureC) >= round1(alarmC)) reasons.push('elevated_temperature');
  if (options.maskPolicy === 'require' && mask === 'no_mask') reasons.push('no_mask');
  const decision: Decision = reasons.length > 0 ? 'secondary_check' : 'pass';
  return {
    ...result,
    decision,
    reasons,
    baselineSample: mode === 'relative' && decision === 'pass' ? temperatureC : null,
  };
}
