export const PROTOCOL_VERSION = 'v1';
