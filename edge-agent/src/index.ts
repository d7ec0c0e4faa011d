// The edge agent as a library: the demo and other workspaces' tests run it in-process.
export { runAgent, type RunningAgent, type AgentDeps, AGENT_VERSION } from './agent.js';
export { loadAgentConfig, envOverrides } from './config/load.js';
export { AgentConfigSchema, type AgentConfig } from './config/schema.js';
export { FAST_FRAMES_IN_FLIGHT, ScreeningPipeline, type ScreeningResult } from './pipeline/pipeline.js';
export { openReplay, readReplayMeta, writeReplayFolder } from './sources/replay.js';
export { createSimSource, simulateScene, simulateToReplay, type SimOptions, type SimTruth } from './sources/sim/index.js';
export type { FramePair, FrameSource, SceneGeometry, ThermalFrame, VisibleFrame } from './frames.js';
export { runEnroll, type EnrollArgs } from './enroll.js';
