export { createProvisioning, readCaCert, ProvisioningError, KNOWN_MODEL_FAMILIES, type Provisioning, type ProvisioningDeps, type DeviceCredentialStore, type Enrollment, type RolloutRequest } from './service.js';
export * from './rollout.js';
export * from './tokens.js';
export type { ProvisionedDevice, ModelVersion } from './store.js';
