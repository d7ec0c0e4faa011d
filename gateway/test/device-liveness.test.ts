import { resolveGatewayConfig } from '../src/config.js';
import { describe, expect, it } from 'vitest';
import { withSilenceRule } from '../src/device-liveness.js';
import type { DeviceView } from '../src/store/devices.js';

const T0 = Date.parse('2026-01-01T08:00:00.000Z');
const device = (status: DeviceView['status'], lastSeenMs: number): DeviceView => ({
  site: 'hq',
  checkpoint: 'gate-1',
  status,
  lastSeen: new Date(lastSeenMs).toISOString(),
  stateAt: null,
  versions: null,
  model: null,
  sources: null,
  calibration: null,
  telemetry: null,
});

describe('offline from silence (withSilenceRule)', () => {
  it('keeps an online device online up to offlineAfter, and reports it offline past it', () => {
    expect(withSilenceRule(device('online', T0), T0 + 30_000, 30_000).status).toBe('online');
    expect(withSilenceRule(device('online', T0), T0 + 30_001, 30_000)).toEqual({ ...device('online', T0), status: 'offline' });
  });

  it('leaves offline and unknown devices as they are, and does nothing when turned off (0)', () => {
    expect(withSilenceRule(device('offline', T0), T0 + 1, 30_000).status).toBe('offline');
    expect(withSilenceRule(device('unknown', T0), T0 + 3_600_000, 30_000).status).toBe('unknown');
    expect(withSilenceRule(device('online', T0), T0 + 3_600_000, 0).status).toBe('online');
  });

  it('counts from the last message, whatever the clock skew of the device (lastSeen is the receipt time)', () => {
    // A device seen "in the future" relative to a slow clock is not silent.
    expect(withSilenceRule(device('online', T0 + 5_000), T0, 30_000).status).toBe('online');
  });
});

describe('devices.offlineAfterS default', () => {
  it('is on (30 s) in cluster mode, where last wills can be lost, off on one broker unless set', () => {
    expect(resolveGatewayConfig({}).devices.offlineAfterS).toBe(0);
    expect(resolveGatewayConfig({ ingest: { source: 'jetstream' }, nats: { servers: ['nats://127.0.0.1:4222'] } }).devices.offlineAfterS).toBe(30);
    expect(resolveGatewayConfig({ devices: { offlineAfterS: 45 } }).devices.offlineAfterS).toBe(45);
    expect(resolveGatewayConfig({ ingest: { source: 'jetstream' }, nats: { servers: ['nats://127.0.0.1:4222'] }, devices: { offlineAfterS: 0 } }).devices.offlineAfterS).toBe(0);
  });
});
