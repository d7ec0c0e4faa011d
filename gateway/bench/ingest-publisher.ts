/**
 * The edge side of bench/ingest.ts, in its own process (as the checkpoints are their own devices):
 * publishes screenings with QoS 1 and reports, for each, when it was handed to the MQTT client
 * (Date.now(): the same system clock the gateway process reads at the other end).
 * Driven over IPC: receives a `PublishJob`, answers a `PublishReport`, then exits.
 */
import { checkpointTopics } from '@checkpoint/protocol';
import { connectEdge, makeScreening } from '../test/helpers/world.js';

export interface PublishJob {
  brokerUrl: string;
  checkpoints: string[];
  screenings: number;
  /** QoS 1 messages in flight per edge. */
  window: number;
  /** Offered load over all edges (screenings/s), or null: as fast as the broker takes them. */
  ratePerS: number | null;
}

export interface PublishReport {
  startedAtMs: number;
  finishedAtMs: number;
  /** [screening id, publish time ms] per screening. */
  published: Array<[string, number]>;
}

async function run(job: PublishJob): Promise<PublishReport> {
  const edges = await Promise.all(job.checkpoints.map((c) => connectEdge(job.brokerUrl, c)));
  const published: Array<[string, number]> = [];
  const perEdge = Math.ceil(job.screenings / edges.length);
  const startedAtMs = Date.now();
  // Paced: screening k (over all edges) is due at startedAtMs + k / rate.
  let due = 0;
  const pace = async () => {
    if (job.ratePerS === null) return;
    const at = startedAtMs + (due++ * 1000) / job.ratePerS;
    const wait = at - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  };
  await Promise.all(
    edges.map(async (edge, e) => {
      let sent = 0;
      const worker = async () => {
        while (sent < perEdge && published.length < job.screenings) {
          sent++;
          await pace();
          const s = makeScreening({ checkpoint: job.checkpoints[e]!, trackId: sent, decision: sent % 20 === 0 ? 'secondary_check' : 'pass' });
          published.push([s.id, Date.now()]);
          await edge.publishAsync(checkpointTopics.screening(s), JSON.stringify(s), { qos: 1 });
        }
      };
      await Promise.all(Array.from({ length: job.window }, worker));
    }),
  );
  const finishedAtMs = Date.now();
  await Promise.all(edges.map((e) => e.endAsync()));
  return { startedAtMs, finishedAtMs, published };
}

process.once('message', (job: PublishJob) => {
  run(job).then(
    (report) => process.send!(report, () => process.exit(0)),
    (err: Error) => {
      process.stderr.write(`publisher failed: ${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
});
