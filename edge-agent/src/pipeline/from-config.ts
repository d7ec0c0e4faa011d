/** Pipeline options from the agent's config: the one place config names meet stage options. */
import type { ModelRef } from '@checkpoint/protocol';
import type { AgentConfig } from '../config/schema.js';
import { DEFAULT_DECISION_OPTIONS } from '../screening/decision.js';
import { DEFAULT_TRACKER_OPTIONS } from '../screening/tracker.js';
import { DEFAULT_MEASURE_OPTIONS } from '../thermometry/measure.js';
import { defaultPipelineOptions, type PipelineOptions } from './pipeline.js';

export function pipelineOptionsFromConfig(config: AgentConfig, model: ModelRef): PipelineOptions {
  const s = config.screening;
  return {
    ...defaultPipelineOptions(config.site, config.checkpoint, model),
    decision: {
      ...DEFAULT_DECISION_OPTIONS,
      thresholdC: s.thresholdC,
      noReference: s.noReference,
      baseline: { samples: s.baselineSamples, minSamples: Math.min(5, s.baselineSamples), alarmOffsetC: s.relativeOffsetC },
      maskPolicy: s.maskPolicy,
      emissivity: s.emissivity,
      minPlausibleC: s.minPlausibleC,
    },
    tracker: { ...DEFAULT_TRACKER_OPTIONS, framesPerDecision: s.framesPerDecision, confirmScore: config.model.confirmScore },
    measure: { ...DEFAULT_MEASURE_OPTIONS, minFaceWidthPx: s.minFaceWidthPx },
    faceScoreThreshold: config.model.faceScoreThreshold,
    snapshots: config.snapshots.policy,
    snapshotQuality: config.snapshots.quality,
  };
}
