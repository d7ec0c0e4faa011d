/**
 * Live cameras deliver thermal and visible frames on their own clocks. The thermal stream sets
 * the pace (it carries the measurement); each thermal frame is paired with the newest visible
 * frame if that one is recent enough, else with none (the pipeline then falls back to finding
 * faces in the thermal frame).
 */
import type { FramePair, FrameSource, SceneGeometry, ThermalSource, VisibleFrame } from '../frames.js';
import type { VisibleSource } from './mjpeg.js';

export interface PairOptions {
  /** A visible frame older than this (relative to the thermal frame's arrival) is not used. */
  maxSkewMs: number;
}

export function pairSources(
  thermal: ThermalSource,
  visible: VisibleSource | null,
  geometry: SceneGeometry,
  options: PairOptions = { maxSkewMs: 250 },
  now: () => number = Date.now,
): FrameSource {
  let latest: { frame: VisibleFrame; arrivedMs: number } | null = null;
  let visibleError: Error | null = null;
  return {
    geometry,
    async *frames(signal?: AbortSignal): AsyncIterable<FramePair> {
      const inner = new AbortController();
      const both = signal ? AbortSignal.any([signal, inner.signal]) : inner.signal;
      const reader = visible
        ? (async () => {
            try {
              for await (const frame of visible.frames(both)) latest = { frame, arrivedMs: now() };
            } catch (err) {
              if (!both.aborted) visibleError = err as Error;
            }
          })()
        : Promise.resolve();
      try {
        for await (const t of thermal.frames(both)) {
          // A failed visible camera must not stop screening silently: surface it.
          if (visibleError) throw new Error(`visible camera failed: ${(visibleError as Error).message}`);
          const fresh = latest && now() - latest.arrivedMs <= options.maxSkewMs ? latest.frame : null;
          yield { thermal: t, visible: fresh };
        }
      } finally {
        // Stop the visible reader; not awaited, so a camera that ignores the signal cannot
        // hold up the end of the stream (close() releases it for good).
        inner.abort();
        void reader;
      }
    },
    async close() {
      await Promise.all([thermal.close(), visible?.close()]);
    },
  };
}
