/**
 * The blackbody check an engineer starts from the devices page (`calibrate` / `check-reference`):
 * the running agent samples its configured reference region in the frames it screens anyway for
 * a few seconds, then judges drift, noise, offset and uniformity against the 0.1 °C guidance
 * (assessBlackbodyStability). One check at a time; frames keep flowing to screening meanwhile.
 */
import type { BlackbodyRegion, ThermalFrame } from '../frames.js';
import { assessBlackbodyStability, blackbodySample, type BlackbodySample, type StabilityReport } from './blackbody.js';

export const CHECK_DEFAULT_S = 5;
export const CHECK_MAX_S = 600;

interface Running {
  region: BlackbodyRegion;
  askedS: number;
  untilMs: number;
  samples: BlackbodySample[];
  finish: (r: StabilityReport | Error) => void;
}

export class ReferenceCheck {
  private running: Running | null = null;

  get busy(): boolean {
    return this.running !== null;
  }

  /**
   * Samples for `durationS` from now and resolves with the report. Refuses (throws) when no
   * reference is configured, a check is already running, or the duration is out of range.
   */
  run(region: BlackbodyRegion | null, durationS: number, nowMs: number): Promise<StabilityReport> {
    if (!region) throw new Error('no reference blackbody is configured on this agent (calibration.blackbody); nothing to check');
    if (this.running) throw new Error('a reference check is already running');
    if (!Number.isFinite(durationS) || durationS < 1 || durationS > CHECK_MAX_S) throw new Error(`params.durationS: expected 1 to ${CHECK_MAX_S} seconds, got ${durationS}`);
    return new Promise<StabilityReport>((resolve, reject) => {
      this.running = {
        region,
        askedS: durationS,
        untilMs: nowMs + durationS * 1000,
        samples: [],
        finish: (r) => {
          this.running = null;
          if (r instanceof Error) reject(r);
          else resolve(r);
        },
      };
    });
  }

  /** Every thermal frame the agent screens passes through here. */
  onFrame(frame: ThermalFrame, nowMs: number): void {
    const r = this.running;
    if (!r) return;
    try {
      r.samples.push(blackbodySample(frame, r.region));
    } catch (err) {
      return r.finish(err as Error);
    }
    if (nowMs < r.untilMs) return;
    if (r.samples.length < 3) return r.finish(new Error(`only ${r.samples.length} thermal frames arrived during the check; is the camera running?`));
    // A quick check (under a minute) cannot judge drift over minutes; it judges what it can
    // (noise, offset, uniformity) and says it was quick. A full check needs its 60 s of frames.
    r.finish(assessBlackbodyStability(r.samples, r.region.setC, r.askedS < 60 ? { minDurationS: 0 } : {}));
  }

  /** The source stopped: a running check fails rather than hanging. */
  abort(reason: string): void {
    this.running?.finish(new Error(reason));
  }
}

/** What goes into the ack's `detail` (a flat, rounded summary; the full report is for logs and the CLI). */
export function checkDetail(r: StabilityReport, askedS: number): Record<string, unknown> {
  const round = (v: number, d = 3) => Math.round(v * 10 ** d) / 10 ** d;
  return {
    verdict: r.verdict,
    /** Under a minute: drift was not judged. */
    quick: askedS < 60,
    frames: r.frames,
    durationS: round(r.durationS, 1),
    setC: r.setC,
    meanC: round(r.meanC, 2),
    offsetC: round(r.offsetC, 2),
    noiseC: round(r.noiseC),
    driftOverWindowC: round(r.driftOverWindowC),
    regionStdC: round(r.regionStdC),
    limitC: r.limitC,
    problems: r.problems,
  };
}
