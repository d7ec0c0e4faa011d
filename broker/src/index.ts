export { createBroker, type Broker, type BrokerOptions } from './broker.js';
export {
  ROLES,
  grantsFor,
  canPublish,
  canSubscribe,
  canRetain,
  isRetainable,
  RETAINABLE_FILTERS,
  RESERVED_CLIENT_ID_PREFIXES,
  mayUseClientId,
  assertBinding,
  isValidUserName,
  topicMatchesFilter,
  filterContains,
  isValidFilter,
  isValidTopicName,
  USER_NAME_PATTERN,
  type Role,
  type Principal,
  type Grants,
} from './acl.js';
export { openUserStore, MAX_CLIENT_IDS_PER_USER, type UserStore, type UserRecord, type UserStoreOptions } from './user-store.js';
export { hashPassword, verifyPassword, mosquittoPasswordHash, generatePassword } from './passwords.js';
export { createLoginGuard, addressKey, type LoginGuard, type LoginGuardOptions, type LoginVerdict, type LoginGuardStats } from './login-guard.js';
export { createPacketSizeGuard, type PacketSizeGuard } from './packet-guard.js';
export { createBrokerMetrics, type BrokerMetrics, type BrokerStats } from './metrics.js';
export { BrokerConfigSchema, loadBrokerConfig, envOverrides, type BrokerConfig } from './config.js';
export { mosquittoAcl, mosquittoPasswordFile, exportMosquitto } from './mosquitto.js';
export { defaultIo, readFirstLine, waitForSignal, type CliIo } from './cli-io.js';
export { exportNats, natsAuthorization, natsPermissionsFor, gatewayJetStreamGrants, GATEWAY_DURABLE, MQTT_MSGS_STREAM } from './nats-export.js';
