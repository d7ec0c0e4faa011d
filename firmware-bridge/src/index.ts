export { crc16, cobsEncode, cobsDecode, encodeFrame, FrameDecoder, PROTOCOL_VERSION, MAX_PAYLOAD_BYTES, type Frame, type FrameErrorCause, type DecoderStats } from './serial/framing.js';
export { encodeMessage, decodeMessage, MessageError, MSG, RELIABLE, type Message, type StepAction } from './serial/messages.js';
export { SerialLink, LinkError, type LinkStats, type LinkOptions } from './serial/link.js';
export { VdaAdapter, type OrderResult } from './bridge/vda-adapter.js';
export { startBridge, type Bridge, type BridgeOptions, type BridgeRobotConfig, type RobotBridgeStats } from './bridge/bridge.js';
export { BridgeConfigSchema, loadBridgeConfig, envOverrides, type BridgeConfig } from './config.js';
export { RobotModel, type RobotModelOptions, type ModelSnapshot, type OrderOutcome } from './sim/model.js';
export { createSimulatedRobot, stateBody, type SimulatedRobot, type SimulatedRobotOptions, type SimTransport, type Fault } from './sim/robot.js';
export { main, parseFault } from './cli.js';
