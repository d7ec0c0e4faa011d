/**
 * The outgoing queue's group commit and write-behind (src/ordered-persistence.ts) against a real
 * LevelDB: what is on disk when a PUBACK may go, what a stop leaves and what the next process reads back.
 */
import { join } from 'node:path';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { makeTempDir } from '@checkpoint/test-support';
import { OrderedLevelPersistence } from '../src/ordered-persistence.js';

const BROKER = { id: 'broker-1', counter: 0 };
const gateway = { id: 'checkpoint-gateway', clientId: 'checkpoint-gateway' };

const packet = (n: number) => ({
  cmd: 'publish',
  topic: 'checkpoint/v1/hq/gate-1/screening',
  payload: Buffer.from(`{"n":${n}}`),
  qos: 1,
  retain: false,
  dup: false,
  brokerId: BROKER.id,
  brokerCounter: n,
});

describe('outgoing queue group commit and write-behind', () => {
  const opened: OrderedLevelPersistence[] = [];
  afterEach(async () => {
    for (const p of opened.splice(0)) await p.destroy().catch(() => undefined);
  });

  async function open(dir: string) {
    const db = new Level(join(dir, 'mqtt-persistence'));
    await db.open();
    const errors: Error[] = [];
    const persistence = new OrderedLevelPersistence(db, (error) => errors.push(error));
    await persistence.setup(BROKER);
    opened.push(persistence);
    return { persistence, db, errors };
  }

  const stored = async (p: OrderedLevelPersistence) => {
    const out: Array<{ brokerCounter: number; messageId?: number }> = [];
    for await (const item of p.outgoingStream(gateway)) out.push(item as { brokerCounter: number; messageId?: number });
    return out.map((x) => [x.brokerCounter, x.messageId ?? null]);
  };

  const outgoingKeys = async (db: Level) => {
    const keys: string[] = [];
    for await (const key of db.keys({ gte: 'outgoing', lt: 'outgoinh' })) keys.push(key);
    return keys;
  };

  it('keeps queued and unacknowledged messages across a stop, and nothing of acknowledged ones', async () => {
    const dir = makeTempDir('checkpoint-broker-persistence');
    const first = await open(dir);
    await first.persistence.outgoingEnqueueCombi([{ clientId: gateway.id }], packet(1));
    await first.persistence.outgoingEnqueueCombi([{ clientId: gateway.id }], packet(2));
    await first.persistence.outgoingEnqueueCombi([{ clientId: gateway.id }], packet(3));
    // 1 delivered and acknowledged at once, 2 delivered with id 7 and not acknowledged, 3 only queued.
    await first.persistence.outgoingUpdate(gateway, { ...packet(1), messageId: 5 });
    expect(await first.persistence.outgoingClearMessageId(gateway, { messageId: 5 })).toMatchObject({ brokerCounter: 1 });
    await first.persistence.outgoingUpdate(gateway, { ...packet(2), messageId: 7 });
    expect(await stored(first.persistence)).toEqual([
      [2, 7],
      [3, null],
    ]);
    await first.persistence.destroy();

    const second = await open(dir);
    expect(await stored(second.persistence)).toEqual([
      [2, 7],
      [3, null],
    ]);
    // A PUBACK for a message id the previous process handed out is found (and cleared) on disk.
    expect(await second.persistence.outgoingClearMessageId(gateway, { messageId: 7 })).toMatchObject({ brokerCounter: 2 });
    expect(await second.persistence.outgoingClearMessageId(gateway, { messageId: 7 })).toBeUndefined();
    await second.persistence.destroy();

    const third = await open(dir);
    expect(await stored(third.persistence)).toEqual([[3, null]]);
    expect(third.errors).toEqual([]);
  });

  it('has a queued message on disk when durable() resolves (the PUBACK waits for it), and deletes it after its acknowledgement', async () => {
    const dir = makeTempDir('checkpoint-broker-persistence');
    const { persistence, db, errors } = await open(dir);
    await persistence.outgoingEnqueueCombi([{ clientId: gateway.id }], packet(10));
    await persistence.outgoingEnqueueCombi([{ clientId: gateway.id }], packet(11));
    await persistence.durable();
    expect(await outgoingKeys(db)).toEqual([10, 11].map((n) => `outgoing:${gateway.id}:${BROKER.id}:${String(n).padStart(16, '0')}`));
    // Delivered and acknowledged at once: the put was on disk, so the delete is written too (by the write-behind, without being asked to).
    await persistence.outgoingUpdate(gateway, { ...packet(10), messageId: 1 });
    await persistence.outgoingClearMessageId(gateway, { messageId: 1 });
    const deadline = Date.now() + 10_000;
    while ((await outgoingKeys(db)).length !== 1) {
      if (Date.now() > deadline) throw new Error(`the acknowledged message's delete did not reach the disk within 10 s: ${(await outgoingKeys(db)).join(', ')}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await persistence.outgoingUpdate(gateway, { ...packet(11), messageId: 2 });
    await persistence.outgoingClearMessageId(gateway, { messageId: 2 });
    await persistence.destroy();

    const reopened = await open(dir);
    expect(await outgoingKeys(reopened.db)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('reads from disk what does not fit its memory bound (30 KB snapshots queued for an offline gateway)', async () => {
    const dir = makeTempDir('checkpoint-broker-persistence');
    const { persistence, db, errors } = await open(dir);
    const snapshot = Buffer.alloc(30 * 1024, 7);
    const count = 700; // ~21 MB, past the 16 MiB kept in memory
    for (let n = 1; n <= count; n++) await persistence.outgoingEnqueueCombi([{ clientId: gateway.id }], { ...packet(n), payload: snapshot });
    const deadline = Date.now() + 20_000;
    while ((await outgoingKeys(db)).length < count) {
      if (Date.now() > deadline) throw new Error(`only ${(await outgoingKeys(db)).length} of ${count} queued snapshots reached the disk within 20 s`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    // The gateway comes back: each is delivered (message id assigned) and acknowledged.
    for (let n = 1; n <= count; n++) {
      await persistence.outgoingUpdate(gateway, { ...packet(n), payload: snapshot, messageId: n });
      const acked = (await persistence.outgoingClearMessageId(gateway, { messageId: n })) as { brokerCounter: number; payload: Buffer };
      expect(acked.brokerCounter).toBe(n);
      expect(acked.payload.length).toBe(snapshot.length);
    }
    await persistence.destroy();
    const reopened = await open(dir);
    expect(await outgoingKeys(reopened.db)).toEqual([]);
    expect(errors).toEqual([]);
  });
});
