/**
 * Relative screening without a reference (pure): like FLIR's EST mode, the alarm is a fixed
 * offset above a running baseline of recent passes, which cancels a camera's absolute error
 * as long as it drifts slowly. Baseline = mean of the last N pass readings without the
 * minimum and maximum.
 */

export interface BaselineOptions {
  /** How many recent passes form the baseline. */
  samples: number;
  /** Readings needed before relative decisions are made at all. */
  minSamples: number;
  /** Alarm at baseline + this. */
  alarmOffsetC: number;
}

export const DEFAULT_BASELINE_OPTIONS: BaselineOptions = { samples: 10, minSamples: 5, alarmOffsetC: 1.0 };

export interface Baseline {
  readonly values: readonly number[];
}

export const emptyBaseline: Baseline = { values: [] };

export function baselineValue(b: Baseline, options: BaselineOptions = DEFAULT_BASELINE_OPTIONS): number | null {
  if (b.values.length < options.minSamples) return null;
  const sorted = [...b.values].sort((x, y) => x - y);
  const trimmed = sorted.length >= 3 ? sorted.slice(1, -1) : sorted;
  return trimmed.reduce((s, v) => s + v, 0) / trimmed.length;
}

export function addToBaseline(b: Baseline, value: number, options: BaselineOptions = DEFAULT_BASELINE_OPTIONS): Baseline {
  return { values: [...b.values, value].slice(-options.samples) };
}
