/**
 * Dispatch benchmark: assignTasks for N robots x N tasks on a generated hospital-sized grid map
 * (default 100 x 100 on a 20 x 20 grid = 400 nodes). Prints p50/p99/max over the rounds, once
 * with a cold path cache (first round after loading the map) and warm.
 *
 *   node scripts/run-ts.mjs gateway/bench/fleet-assign.ts [robots=100] [tasks=100] [rounds=30]
 */
import { assignTasks, loadSiteMap, type RobotCandidate, type TaskCandidate } from '../src/fleet/index.js';

const [robotsN = 100, tasksN = 100, rounds = 30] = process.argv.slice(2).map(Number);
const side = 20;
let seed = 42;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const id = (x: number, y: number) => `n${x}-${y}`;

function makeMap() {
  const nodes = [];
  const edges = [];
  for (let x = 0; x < side; x++) {
    for (let y = 0; y < side; y++) {
      const kind = y === 0 && x % 4 === 0 ? 'charger' : y === side - 1 ? 'parking' : 'corridor';
      nodes.push({ id: id(x, y), x: x * 8, y: y * 8, kind });
      if (x > 0) edges.push({ from: id(x - 1, y), to: id(x, y) });
      if (y > 0) edges.push({ from: id(x, y - 1), to: id(x, y) });
    }
  }
  return loadSiteMap({ nodes, edges });
}

const pick = () => id(Math.floor(rand() * side), Math.floor(rand() * side));
const robots: RobotCandidate[] = [...Array(robotsN).keys()].map((i) => ({
  key: `acme/R${i}`,
  node: pick(),
  speed: 0.7 + rand() * 0.5,
  batteryPct: 25 + rand() * 75,
  charging: false,
  unavailable: null,
  capabilities: ['pick', 'drop', 'disinfect', 'waitForTrigger', 'startCharging'],
  current: null,
  hasNext: false,
  movingTo: null,
}));
const tasks: TaskCandidate[] = [...Array(tasksN).keys()].map((i) => {
  const start = pick();
  return {
    id: `T${i}`,
    priority: Math.floor(rand() * 80),
    deadline: null,
    createdAt: i,
    startNode: start,
    endNode: pick(),
    lengthM: 50 + rand() * 150,
    actionS: 60,
    requires: i % 3 === 0 ? ['disinfect'] : ['pick', 'drop'],
    pinnedRobot: null,
  };
});

const times: number[] = [];
let assigned = 0;
let cold = 0;
const map = makeMap(); // the path memo is per map: round 0 is cold
for (let r = 0; r < rounds; r++) {
  const t0 = process.hrtime.bigint();
  const plan = assignTasks({ map, robots, tasks, now: 0, policy: { parkIdleRobots: true } });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r === 0) cold = ms;
  else times.push(ms);
  assigned = plan.assignments.length;
}
times.sort((a, b) => a - b);
const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!;
process.stdout.write(
  `assignTasks ${robotsN} robots x ${tasksN} tasks on ${side * side} nodes: ` +
    `cold ${cold.toFixed(1)} ms; warm p50 ${q(0.5).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms, max ${times.at(-1)!.toFixed(1)} ms ` +
    `(${assigned} assigned, ${rounds - 1} warm rounds)\n`,
);
