/** The fleet as OPC UA sees it: CreateTask's one `target` mapped onto task requests, robot states (no sockets). */
import { describe, expect, it } from 'vitest';
import { opcuaRobotState, requestFromOpcua } from '../src/fleet-opcua-view.js';
import { emptyRobot, parseTaskRequest, loadSiteMap } from '../src/fleet/index.js';
import { FleetCommandError } from '../src/opcua/fleet-view.js';
import { FLEET_MAP } from './fleet-world.js';

const map = loadSiteMap(FLEET_MAP);

describe('OPC UA fleet view', () => {
  it('maps CreateTask targets onto valid task requests', () => {
    const cases = [
      [{ type: 'disinfection', target: 'gate-2-area', priority: 70 }, { type: 'disinfection', zone: 'gate-2-area', priority: 70 }],
      [{ type: 'disinfection', target: 'W1', priority: 50 }, { type: 'disinfection', node: 'W1', priority: 50 }],
      [{ type: 'charge', target: '', priority: 50 }, { type: 'charge', priority: 50 }],
      [{ type: 'patrol', target: 'P1, H ,W1', priority: 10 }, { type: 'patrol', nodes: ['P1', 'H', 'W1'], priority: 10 }],
      [{ type: 'delivery', target: 'PH,W2', priority: 60 }, { type: 'delivery', from: 'PH', to: 'W2', what: 'requested over OPC UA', priority: 60 }],
    ] as const;
    for (const [input, expected] of cases) {
      const request = requestFromOpcua(input, map.zones);
      expect(request).toEqual(expected);
      expect(() => parseTaskRequest(request, map)).not.toThrow();
    }
    expect(() => requestFromOpcua({ type: 'delivery', target: 'PH', priority: 1 }, map.zones)).toThrow(FleetCommandError);
    expect(() => requestFromOpcua({ type: 'teleport', target: 'PH', priority: 1 }, map.zones)).toThrow(/unknown task type "teleport"/);
  });

  it('names robot states: offline, error, paused, charging, driving, working, idle', () => {
    const base = { ...emptyRobot({ manufacturer: 'acme', serialNumber: 'R1' }, 0), connection: 'ONLINE' as const, operatingMode: 'AUTOMATIC' as const, lastNodeId: 'P1', batteryCharge: 80, freshState: true };
    expect(opcuaRobotState({ ...base, connection: 'CONNECTIONBROKEN' }, true)).toBe('offline');
    expect(opcuaRobotState({ ...base, eStop: 'MANUAL' }, false)).toBe('error');
    expect(opcuaRobotState({ ...base, paused: true }, true)).toBe('paused');
    expect(opcuaRobotState({ ...base, paused: true, eStop: 'MANUAL' }, true)).toBe('error');
    expect(opcuaRobotState({ ...base, charging: true }, false)).toBe('charging');
    expect(opcuaRobotState({ ...base, driving: true }, true)).toBe('driving');
    expect(opcuaRobotState(base, true)).toBe('working');
    expect(opcuaRobotState(base, false)).toBe('idle');
  });
});
