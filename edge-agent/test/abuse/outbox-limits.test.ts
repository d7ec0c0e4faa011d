/**
 * The outbox holds images: capped by count alone, 100 000 snapshots of ~30 KB would fill an SD
 * card. It is capped by bytes too; past a cap the oldest snapshots go first, screenings last, and
 * every drop is counted. A real SQLite file, reopened to check the byte count survives restarts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OutboxStore } from '../../src/outbox/store.js';

const dirs: string[] = [];
const tempFile = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'outbox-limits-'));
  dirs.push(dir);
  return path.join(dir, 'outbox.sqlite');
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const screening = (i: number) => ({ topic: 'checkpoint/v1/hq/gate-1/screening', payload: Buffer.from(JSON.stringify({ i, pad: 'x'.repeat(680) })), qos: 1 as const });
const snapshot = (i: number) => ({ topic: `checkpoint/v1/hq/gate-1/snapshot/01J${String(i).padStart(23, '0')}`, payload: Buffer.alloc(30_000, i % 256), qos: 1 as const });

describe('outbox limits', () => {
  it('past the byte cap, the oldest snapshots are dropped first and every screening is kept', () => {
    const file = tempFile();
    const store = new OutboxStore(file, { maxMessages: 10_000, maxBytes: 200_000 });
    for (let i = 0; i < 20; i++) store.enqueue([screening(i), snapshot(i)]);
    expect(store.byteSize()).toBeLessThanOrEqual(200_000);
    const kept = store.peek(0, 1000);
    expect(kept.filter((m) => m.topic.endsWith('/screening'))).toHaveLength(20);
    const snapshots = kept.filter((m) => m.topic.includes('/snapshot/'));
    // The newest snapshots survive: (200 000 - 20 screenings) / 30 000 = 6.
    expect(snapshots.map((m) => m.payload[0])).toEqual([14, 15, 16, 17, 18, 19]);
    expect(store.dropped).toBe(14);
    expect(store.droppedSnapshots).toBe(14);
    expect(store.droppedBytes).toBe(14 * 30_000);
    store.close();

    // The byte count is the file's, after a restart too; acknowledging frees bytes.
    const reopened = new OutboxStore(file, { maxMessages: 10_000, maxBytes: 200_000 });
    expect(reopened.byteSize()).toBe(kept.reduce((sum, m) => sum + m.payload.length, 0));
    reopened.acknowledge(snapshots[0]!.seq);
    expect(reopened.byteSize()).toBe(kept.reduce((sum, m) => sum + m.payload.length, 0) - 30_000);
    reopened.acknowledge(snapshots[0]!.seq); // twice (dropped while in flight): no change
    expect(reopened.byteSize()).toBe(kept.reduce((sum, m) => sum + m.payload.length, 0) - 30_000);
    reopened.close();
  });

  it('with no snapshots left, the oldest screenings go, counted', () => {
    const store = new OutboxStore(tempFile(), { maxMessages: 50, maxBytes: 1_000_000 });
    for (let i = 0; i < 5; i++) store.enqueue([screening(i), snapshot(i)]);
    for (let i = 5; i < 60; i++) store.enqueue([screening(i)]);
    expect(store.count()).toBe(50);
    const kept = store.peek(0, 1000);
    expect(kept.some((m) => m.topic.includes('/snapshot/'))).toBe(false);
    expect(kept.map((m) => (JSON.parse(m.payload.toString()) as { i: number }).i)).toEqual(Array.from({ length: 50 }, (_, k) => k + 10));
    expect(store.droppedSnapshots).toBe(5);
    expect(store.dropped).toBe(15);
    store.close();
  });
});
