/** Provisioning's pure core: enrollment tokens and the staged roll-out state machine (no sockets). */
import { describe, expect, it } from 'vitest';
import {
  advance,
  brokerUserName,
  cancel,
  counts,
  devicesToSend,
  hashToken,
  judgeToken,
  markProgress,
  markResult,
  markSent,
  mayDownload,
  newEnrollmentToken,
  planRollout,
  resolveTargets,
  stageEnds,
  type Rollout,
} from '../src/provisioning/index.js';

const T0 = Date.parse('2025-03-01T10:00:00Z');
const model = { name: 'masked-face-640', version: '2', sha256: 'a'.repeat(64), sizeBytes: 100 };
const dev = (checkpoint: string, site = 'hq') => ({ site, checkpoint });

describe('enrollment tokens', () => {
  it('are random, stored as a hash, and judged with a message that says what to do', () => {
    const a = newEnrollmentToken();
    const b = newEnrollmentToken();
    expect(a.token).not.toBe(b.token);
    expect(a.token).toMatch(/^cpe_[A-Za-z0-9_-]{43}$/);
    expect(a.hash).toBe(hashToken(a.token));
    expect(a.hash).not.toContain(a.token);

    const row = { site: 'hq', checkpoint: 'gate-1', createdMs: T0, expiresMs: T0 + 3_600_000, usedMs: null, invalidatedMs: null };
    expect(judgeToken(row, T0 + 1000)).toEqual({ ok: true });
    expect(judgeToken(null, T0)).toMatchObject({ ok: false, reason: 'unknown', message: expect.stringMatching(/unknown enrollment token/) });
    expect(judgeToken({ ...row, usedMs: T0 + 5 }, T0 + 10)).toMatchObject({ ok: false, reason: 'used', message: expect.stringMatching(/hq\/gate-1 was already used at 2025-03-01T10:00:00.005Z.*new one/) });
    expect(judgeToken(row, T0 + 3_600_000)).toMatchObject({ ok: false, reason: 'expired', message: expect.stringMatching(/expired at 2025-03-01T11:00:00.000Z/) });
    expect(judgeToken({ ...row, invalidatedMs: T0 + 1 }, T0 + 2)).toMatchObject({ ok: false, reason: 'superseded' });
    // Used wins over expired: the more useful thing to hear.
    expect(judgeToken({ ...row, usedMs: T0 + 1 }, T0 + 7_200_000)).toMatchObject({ reason: 'used' });
  });

  it('name broker users site.checkpoint, hashed when too long for the broker', () => {
    expect(brokerUserName(dev('gate-1'))).toBe('hq.gate-1');
    const long = brokerUserName({ site: 's'.repeat(40), checkpoint: 'c'.repeat(40) });
    expect(long.length).toBeLessThanOrEqual(64);
    expect(long).not.toBe(brokerUserName({ site: 's'.repeat(40), checkpoint: `${'c'.repeat(39)}d` }));
  });
});

describe('roll-out targets and stages', () => {
  const known = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'].map((c) => dev(`gate-${c}`)).concat([dev('x', 'other')]);

  it('keeps listed checkpoints in order, picks a stable share of a site, refuses unknown ones by index', () => {
    expect(resolveTargets([dev('gate-c'), dev('gate-a'), dev('gate-c')], known)).toEqual([dev('gate-c'), dev('gate-a')]);
    const tenth = resolveTargets([{ site: 'hq', percent: 10 }], known);
    expect(tenth).toHaveLength(1);
    expect(resolveTargets([{ site: 'hq', percent: 10 }], [...known].reverse())).toEqual(tenth); // same canary whatever the order
    expect(resolveTargets([{ site: 'hq', percent: 30 }], known).slice(0, 1)).toEqual(tenth); // and it stays in bigger shares
    expect(resolveTargets([{ site: 'hq', percent: 100 }], known)).toHaveLength(10);
    expect(() => resolveTargets([dev('gate-a'), dev('nope')], known)).toThrow('targets/1: unknown checkpoint hq/nope');
    expect(() => resolveTargets([{ site: 'mars', percent: 50 }], known)).toThrow('targets/0: site mars has no known checkpoints');
  });

  it('turns percentages or batch sizes into cumulative stage ends', () => {
    expect(stageEnds(10, { stages: [10, 50, 100] })).toEqual([1, 5, 10]);
    expect(stageEnds(3, { stages: [10, 50, 100] })).toEqual([1, 2, 3]);
    expect(stageEnds(2, { stages: [10, 50] })).toEqual([1, 2]); // the rest always forms a last stage
    expect(stageEnds(3, {})).toEqual([3]);
    expect(stageEnds(7, { batchSizes: [1, 2] })).toEqual([1, 3, 7]);
    expect(stageEnds(2, { batchSizes: [1, 5, 5] })).toEqual([1, 2]);
    expect(() => stageEnds(5, { stages: [50, 10] })).toThrow('stages/1: percentages must increase');
    expect(() => stageEnds(5, { stages: [50], batchSizes: [1] })).toThrow('not both');
  });
});

describe('roll-out state machine', () => {
  const plan = (failureThreshold: number, batchSizes = [1, 2]): Rollout =>
    planRollout({ id: 'r1', model, devices: [dev('a'), dev('b'), dev('c')], stages: { batchSizes }, failureThreshold, createdBy: 'eng', nowMs: T0 });
  const sendAll = (r: Rollout) => devicesToSend(r).reduce((acc, d) => markSent(acc, d, `cmd-${d.checkpoint}`, T0), r);

  it('runs stage after stage and completes, recording progress, results and who may download', () => {
    let r = plan(0.5);
    expect(devicesToSend(r).map((d) => d.checkpoint)).toEqual(['a']);
    r = sendAll(r);
    expect(mayDownload(r, dev('a'))).toBe(true);
    expect(mayDownload(r, dev('b'))).toBe(false); // not sent yet
    r = markProgress(r, dev('a'), 'cmd-a', 0.4);
    expect(r.devices[0]).toMatchObject({ status: 'updating', progress: 0.4 });
    expect(markProgress(r, dev('a'), 'cmd-other', 0.9)).toBe(r); // an old command's ack changes nothing
    r = markResult(r, dev('a'), 'cmd-a', { ok: true, detail: { version: '2' } }, T0 + 1);
    expect(mayDownload(r, dev('a'))).toBe(false);
    expect(r).toMatchObject({ status: 'running', stage: 1 });
    expect(devicesToSend(r).map((d) => d.checkpoint)).toEqual(['b', 'c']);
    r = sendAll(r);
    r = markResult(r, dev('c'), 'cmd-c', { ok: false, error: 'sha256 mismatch; still running old' }, T0 + 2);
    expect(r.status).toBe('running'); // 1 of 3 started failed: within 50 %
    r = markResult(r, dev('b'), 'cmd-b', { ok: true, detail: null }, T0 + 3);
    expect(r).toMatchObject({ status: 'completed', finishedMs: T0 + 3, reason: '1 of 3 devices failed (within the threshold)' });
    expect(counts(r)).toMatchObject({ succeeded: 2, failed: 1, pending: 0 });
    expect(markResult(r, dev('b'), 'cmd-b', { ok: false, error: 'late' }, T0 + 4)).toBe(r); // finished devices stay finished
  });

  it('halts by itself when failures pass the threshold and skips the devices not started', () => {
    let r = sendAll(plan(0));
    r = markResult(r, dev('a'), 'cmd-a', { ok: false, error: 'self-test failed' }, T0 + 1);
    expect(r.status).toBe('halted');
    expect(r.reason).toMatch(/1 of 1 started devices failed \(threshold 0 %\); halted in stage 1 of 2/);
    expect(r.devices.map((d) => d.status)).toEqual(['failed', 'skipped', 'skipped']);
    expect(devicesToSend(r)).toEqual([]);
  });

  it('halts mid-stage without waiting for the rest, and lets devices in flight finish', () => {
    let r = plan(0.3, [3]);
    r = sendAll(r);
    r = markResult(r, dev('a'), 'cmd-a', { ok: false, error: 'x' }, T0 + 1); // 1 of 3 = 33 % > 30 %
    expect(r.status).toBe('halted');
    r = markResult(r, dev('b'), 'cmd-b', { ok: true, detail: null }, T0 + 2);
    expect(r.devices.map((d) => d.status)).toEqual(['failed', 'succeeded', 'sent']);
    expect(advance(r, T0 + 3)).toBe(r);
  });

  it('can be cancelled while running', () => {
    const r = cancel(sendAll(plan(0)), 'eng', T0 + 5);
    expect(r).toMatchObject({ status: 'cancelled', reason: 'cancelled by eng' });
    expect(r.devices.map((d) => d.status)).toEqual(['sent', 'skipped', 'skipped']);
  });
});
