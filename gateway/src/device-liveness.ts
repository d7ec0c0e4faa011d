/**
 * Offline from silence. A checkpoint's retained `state` (online, or offline from its MQTT last
 * will) is not enough in cluster mode: the last will is not published when the broker node holding
 * the device's session crashes (issue #18), so the device would stay "online" for ever. The agent
 * publishes telemetry every `telemetry.intervalMs` (10 s by default); a device that said nothing
 * (telemetry, state, screening: any message moves `lastSeen`) for `offlineAfterS` is offline.
 */
import type { DeviceView } from './store/devices.js';

/** The device as reported: `online` turns `offline` once it has been silent longer than `offlineAfterMs` (0: never). */
export function withSilenceRule(device: DeviceView, nowMs: number, offlineAfterMs: number): DeviceView {
  if (offlineAfterMs <= 0 || device.status !== 'online') return device;
  const lastSeenMs = Date.parse(device.lastSeen);
  return nowMs - lastSeenMs > offlineAfterMs ? { ...device, status: 'offline' } : device;
}
