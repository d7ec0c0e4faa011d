// The gateway as a library: the root demo and other workspaces' tests run it in-process.
export { createGateway, createLogger, type Gateway, type GatewayDeps } from './gateway.js';
export { GatewayConfigSchema, loadGatewayConfig, resolveGatewayConfig, envOverrides, parseInfluxUrl, type GatewayConfig } from './config.js';
export { openDatabase } from './store/db.js';
export { createUserStore, ROLES, roleAtLeast, type Role, type UserStore, type UserRecord } from './store/users.js';
export {
  acknowledge,
  deviceStateAlertChanges,
  periodicChanges,
  screeningAlertChanges,
  OUTCOMES,
  type Alert,
  type AlertChange,
  type AlertPolicy,
  type Outcome,
} from './alerts.js';
export { classifyMessage, type Classified } from './ingest/classify.js';
export { screeningPoint, telemetryPoint, deviceStatePoint, robotStatePoint, screeningTimeNs, type SeriesPoint } from './series/points.js';
export { influxPercentile, parseInterval, type SeriesStore, type CheckpointStats, type StatsQuery } from './series/store.js';
export { formatSse } from './api/live.js';
export { demoFleet, type DemoRobot } from './fleet/demo-map.js';
export type { FleetService, TaskView, RobotApiView } from './fleet-service.js';
