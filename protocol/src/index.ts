export * from './topics.js';
export * from './schemas.js';
export * from './validators.js';
export * from './config.js';
export * from './vda5050.js';
export * from './timestamps.js';
export * from './version.js';
export * from './brokers.js';
