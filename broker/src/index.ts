export { createBroker, type Broker, type BrokerOptions } from './broker.js';
export {
  ROLES,
  grantsFor,
  canPublish,
  canSubscribe,
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
export { openUserStore, type UserStore, type UserRecord, type UserStoreOptions } from './user-store.js';
export { hashPassword, verifyPassword, mosquittoPasswordHash, generatePassword } from './passwords.js';
export { createLoginLimiter, type LoginLimiter, type LoginLimiterOptions } from './rate-limit.js';
export { createPacketSizeGuard, type PacketSizeGuard } from './packet-guard.js';
export { createBrokerMetrics, type BrokerMetrics, type BrokerStats } from './metrics.js';
export { BrokerConfigSchema, loadBrokerConfig, envOverrides, type BrokerConfig } from './config.js';
export { mosquittoAcl, mosquittoPasswordFile, exportMosquitto } from './mosquitto.js';
export { defaultIo, readFirstLine, waitForSignal, type CliIo } from './cli-io.js';
