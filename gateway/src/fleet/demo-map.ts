/**
 * The demo hospital (root `npm start`): one floor with the two checkpoints, a pharmacy, three
 * wards, two chargers, three parking spots and a disinfection station, a rule that sends a UV
 * robot to a checkpoint whose alert was acknowledged as `referred`, and three robots to simulate.
 *
 *   ward-1 (20,25)      ward-2 (40,25)      ward-3 (60,25)
 *      |                   |                   |
 *   park-2  park-1 - gate-1-hall - hall-a ----- hall-b ----- gate-2-hall - park-3
 *   (-10,20)(-10,10)   (0,10)     (20,10)      (40,10)        (60,10)     (70,10)
 *                        |        /   \  \      /  \             |
 *                     gate-1  pharmacy charger-1  uv-station  gate-2
 *                     (0,0)   (20,-10) (30,0)     (40,-10)    (60,0)
 *                                                  charger-2 (50,0) -- hall-b
 *
 *   const gateway = await createGateway({ ..., fleet: { map: demoFleet.map, rules: demoFleet.rules } });
 *   for (const r of demoFleet.robots) await createSimulatedRobot({ ...r, transport: { kind: 'mqtt', ... } });
 */
import type { Rule } from './rules.js';
import type { SiteMapConfig } from './map.js';

const map: SiteMapConfig = {
  nodes: [
    { id: 'gate-1', x: 0, y: 0, kind: 'gate', name: 'Checkpoint gate 1 (main entrance)', names: { 'zh-CN': '1号检查口（正门）' } },
    { id: 'gate-1-hall', x: 0, y: 10, name: 'Main entrance hall', names: { 'zh-CN': '正门大厅' } },
    { id: 'gate-2', x: 60, y: 0, kind: 'gate', name: 'Checkpoint gate 2 (emergency)', names: { 'zh-CN': '2号检查口（急诊）' } },
    { id: 'gate-2-hall', x: 60, y: 10, name: 'Emergency hall', names: { 'zh-CN': '急诊大厅' } },
    { id: 'hall-a', x: 20, y: 10, name: 'Corridor A', names: { 'zh-CN': 'A走廊' } },
    { id: 'hall-b', x: 40, y: 10, name: 'Corridor B', names: { 'zh-CN': 'B走廊' } },
    { id: 'pharmacy', x: 20, y: -10, kind: 'pharmacy', name: 'Pharmacy', names: { 'zh-CN': '药房' } },
    { id: 'ward-1', x: 20, y: 25, kind: 'ward', name: 'Ward 1 (internal medicine)', names: { 'zh-CN': '1病区（内科）' } },
    { id: 'ward-2', x: 40, y: 25, kind: 'ward', name: 'Ward 2 (surgery)', names: { 'zh-CN': '2病区（外科）' } },
    { id: 'ward-3', x: 60, y: 25, kind: 'ward', name: 'Ward 3 (isolation)', names: { 'zh-CN': '3病区（隔离）' } },
    { id: 'charger-1', x: 30, y: 0, kind: 'charger', name: 'Charger 1', names: { 'zh-CN': '1号充电桩' } },
    { id: 'charger-2', x: 50, y: 0, kind: 'charger', name: 'Charger 2', names: { 'zh-CN': '2号充电桩' } },
    { id: 'park-1', x: -10, y: 10, kind: 'parking', name: 'Parking 1', names: { 'zh-CN': '1号停车位' } },
    { id: 'park-2', x: -10, y: 20, kind: 'parking', name: 'Parking 2', names: { 'zh-CN': '2号停车位' } },
    { id: 'park-3', x: 70, y: 10, kind: 'parking', name: 'Parking 3', names: { 'zh-CN': '3号停车位' } },
    { id: 'uv-station', x: 40, y: -10, kind: 'disinfection', name: 'Disinfection station', names: { 'zh-CN': '消毒站' } },
  ],
  edges: [
    { from: 'gate-1', to: 'gate-1-hall' },
    { from: 'gate-1-hall', to: 'hall-a' },
    { from: 'hall-a', to: 'hall-b' },
    { from: 'hall-b', to: 'gate-2-hall' },
    { from: 'gate-2-hall', to: 'gate-2' },
    { from: 'hall-a', to: 'pharmacy' },
    { from: 'hall-a', to: 'ward-1' },
    { from: 'hall-b', to: 'ward-2' },
    { from: 'gate-2-hall', to: 'ward-3' },
    { from: 'hall-a', to: 'charger-1' },
    { from: 'hall-b', to: 'charger-1' },
    { from: 'hall-b', to: 'charger-2' },
    { from: 'hall-b', to: 'uv-station' },
    { from: 'gate-1-hall', to: 'park-1' },
    { from: 'park-1', to: 'park-2' },
    { from: 'gate-2-hall', to: 'park-3' },
  ],
  zones: [
    { id: 'gate-1-area', nodes: ['gate-1', 'gate-1-hall'], checkpoint: 'gate-1', name: 'Main entrance area', names: { 'zh-CN': '正门区域' } },
    { id: 'gate-2-area', nodes: ['gate-2', 'gate-2-hall'], checkpoint: 'gate-2', name: 'Emergency entrance area', names: { 'zh-CN': '急诊入口区域' } },
  ],
};

const rules: Rule[] = [
  {
    id: 'disinfect-after-referral',
    when: { alertAcknowledged: { outcome: 'referred' } },
    then: { type: 'disinfection', target: 'checkpoint-zone', priority: 90, durationS: 120 },
  },
];

/** What `createSimulatedRobot` needs per robot (plus a transport). */
export interface DemoRobot {
  manufacturer: string;
  serialNumber: string;
  startNode: string;
  x: number;
  y: number;
  speed: number;
  batteryPct: number;
  capabilities: string[];
}

const robots: DemoRobot[] = [
  { manufacturer: 'checkpoint', serialNumber: 'DEL-1', startNode: 'park-1', x: -10, y: 10, speed: 1, batteryPct: 90, capabilities: ['pick', 'drop', 'waitForTrigger', 'startCharging', 'stopCharging'] },
  { manufacturer: 'checkpoint', serialNumber: 'DEL-2', startNode: 'park-2', x: -10, y: 20, speed: 1, batteryPct: 60, capabilities: ['pick', 'drop', 'waitForTrigger', 'startCharging', 'stopCharging'] },
  { manufacturer: 'checkpoint', serialNumber: 'UV-1', startNode: 'park-3', x: 70, y: 10, speed: 0.7, batteryPct: 80, capabilities: ['disinfect', 'waitForTrigger', 'startCharging', 'stopCharging'] },
];

/** The demo's `fleet` config (map + rules) and the robots to simulate. */
export const demoFleet = { map, rules, robots } as const;
