import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeTempDir } from '@checkpoint/test-support';
import { addressKey, createLoginGuard, createPacketSizeGuard, hashPassword, openUserStore, verifyPassword } from '../src/index.js';

describe('packet size guard', () => {
  const publish = (bodyLength: number) => {
    const length: number[] = [];
    let n = bodyLength;
    do {
      let byte = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) byte |= 0x80;
      length.push(byte);
    } while (n > 0);
    return Buffer.concat([Buffer.from([0x32, ...length]), Buffer.alloc(bodyLength)]);
  };

  it('passes packets up to the limit, however the stream is chunked', () => {
    const guard = createPacketSizeGuard(1000);
    const stream = Buffer.concat([publish(10), publish(997), publish(0), publish(500)]); // 997 + 1 + 2 = 1000
    for (let i = 0; i < stream.length; i += 7) expect(guard.push(stream.subarray(i, i + 7))).toEqual({ ok: true });
  });

  it('rejects an oversized packet from its header alone, and stays rejecting', () => {
    const guard = createPacketSizeGuard(1000);
    expect(guard.push(publish(10))).toEqual({ ok: true });
    const verdict = guard.push(publish(998).subarray(0, 3));
    expect(verdict).toEqual({ ok: false, reason: 'packet of 1001 bytes exceeds the 1000-byte limit' });
    expect(guard.push(Buffer.from([0x30, 0x00])).ok).toBe(false);
  });

  it('rejects malformed headers', () => {
    expect(createPacketSizeGuard(1e9).push(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))).toMatchObject({ ok: false, reason: expect.stringMatching(/longer than 4 bytes/) });
    expect(createPacketSizeGuard(1e9).push(Buffer.from([0x00, 0x00]))).toMatchObject({ ok: false, reason: expect.stringMatching(/reserved packet type/) });
  });
});

describe('login guard (limits)', () => {
  const wrong = () => Promise.resolve(null);
  const right = () => Promise.resolve('user');

  it('refuses an address after maxFailures within the window, per address, until they age out', async () => {
    let now = 0;
    const guard = createLoginGuard({ maxFailures: 3, windowMs: 1000, now: () => now });
    for (let i = 0; i < 3; i++) {
      expect(await guard.attempt('10.0.0.1', wrong)).toEqual({ ok: false, reason: 'failed' });
      now += 100;
    }
    expect(await guard.attempt('10.0.0.1', right)).toEqual({ ok: false, reason: 'limited', retryAfterMs: 700 });
    expect(await guard.attempt('10.0.0.2', right)).toEqual({ ok: true, value: 'user' });
    now = 1001; // the first failure (t=0) left the window
    expect(await guard.attempt('10.0.0.1', right)).toEqual({ ok: true, value: 'user' });
  });

  it('forgets the least recently failing addresses beyond maxAddresses', () => {
    const guard = createLoginGuard({ maxFailures: 1, windowMs: 1000, maxAddresses: 2, now: () => 0 });
    for (const a of ['a', 'b', 'c']) guard.recordFailure(a);
    expect(guard.stats().addresses).toBe(2);
    expect(guard.retryAfterMs('a')).toBe(0);
    expect(guard.retryAfterMs('c')).toBe(1000);
  });

  it('reserves each attempt before its check: of 200 concurrent wrong ones, maxFailures are checked', async () => {
    const guard = createLoginGuard({ maxFailures: 5, windowMs: 60_000 });
    let checks = 0;
    const verdicts = await Promise.all(Array.from({ length: 200 }, () => guard.attempt('10.0.0.1', async () => ((checks += 1), null))));
    expect(checks).toBe(5);
    expect(verdicts.filter((v) => v.ok === false && v.reason === 'failed')).toHaveLength(5);
    expect(verdicts.filter((v) => v.ok === false && v.reason === 'limited')).toHaveLength(195);
  });

  it('runs checks maxConcurrentChecks at a time, round-robin over addresses, and refuses beyond maxWaiting', async () => {
    const guard = createLoginGuard({ maxFailures: 5, windowMs: 60_000, maxConcurrentChecks: 1, maxWaiting: 50 });
    const order: string[] = [];
    const check = (who: string) => async () => (order.push(who), who);
    const flood = Array.from({ length: 40 }, () => guard.attempt('10.0.0.1', check('flood')));
    const other = guard.attempt('10.0.0.2', check('other'));
    expect(await other).toEqual({ ok: true, value: 'other' });
    expect(order.indexOf('other')).toBeLessThanOrEqual(2); // not behind the 40
    const more = await Promise.all(Array.from({ length: 20 }, () => guard.attempt('10.0.0.3', check('late'))));
    expect(more.filter((v) => v.ok === false && v.reason === 'busy').length).toBeGreaterThan(0);
    expect((await Promise.all(flood)).every((v) => v.ok)).toBe(true); // valid logins are delayed, never refused
    expect(guard.stats()).toEqual({ checking: 0, waiting: 0, addresses: 0 });
  });

  it('counts IPv4-mapped addresses as IPv4 and IPv6 addresses by their /64', () => {
    expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:0:1::17')).toBe('2001:db8:0:1::/64');
    expect(addressKey('2001:0db8:0000:0001:ffff:1:2:3')).toBe('2001:db8:0:1::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('10.1.2.3')).toBe('10.1.2.3');
  });
});

describe('passwords and user store', () => {
  it('hashes with a per-user salt and verifies only the right password', async () => {
    const a = await hashPassword('correct horse');
    const b = await hashPassword('correct horse');
    expect(a).not.toBe(b);
    expect(a).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(await verifyPassword('correct horse', a)).toBe(true);
    expect(await verifyPassword('correct horsE', a)).toBe(false);
    expect(await verifyPassword('x', 'not-a-hash')).toBe(false);
  });

  it('adds, lists, verifies, re-keys and removes users; keeps only hashes', async () => {
    const file = join(makeTempDir('checkpoint-broker-store'), 'users.sqlite');
    const store = openUserStore(file, { mosquittoHashIterations: 1000 });
    await store.add({ name: 'gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' }, 'password-one');
    await expect(store.add({ name: 'gate-1', role: 'viewer' }, 'password-two')).rejects.toThrow('user "gate-1" already exists');
    await expect(store.add({ name: 'short', role: 'viewer' }, 'short')).rejects.toThrow(/too short/);
    await expect(store.add({ name: 'bad', role: 'edge', site: 'HQ', checkpoint: 'g' }, 'password-one')).rejects.toThrow(/invalid site "HQ"/);
    expect(store.list().map((u) => [u.name, u.role])).toEqual([['gate-1', 'edge']]);
    expect(await store.verify('gate-1', 'password-one')).toEqual({ name: 'gate-1', role: 'edge', site: 'hq', checkpoint: 'gate-1' });
    expect(await store.verify('gate-1', 'password-two')).toBeNull();
    expect(await store.verify('nobody', 'password-one')).toBeNull();
    await store.setPassword('gate-1', 'password-two');
    expect(await store.verify('gate-1', 'password-two')).not.toBeNull();
    expect(store.mosquittoCredentials()).toEqual([{ name: 'gate-1', hash: expect.stringMatching(/^\$7\$1000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/=]{88}$/) }]);
    store.close();

    const reopened = openUserStore(file); // a second process (CLI, gateway) sees the same users
    expect(JSON.stringify(reopened.list())).not.toContain('password');
    expect(reopened.remove('gate-1')).toBe(true);
    expect(reopened.remove('gate-1')).toBe(false);
    await expect(reopened.setPassword('gate-1', 'password-three')).rejects.toThrow('no user "gate-1"');
    reopened.close();
  });
});
