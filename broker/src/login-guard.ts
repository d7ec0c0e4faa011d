/**
 * The one place in charge of login limits and password checks, for every door that takes a
 * password: the broker's CONNECT, the gateway's API login, OPC UA sessions and the devices' model
 * download (HTTP Basic). Each program holds one guard and sends every password check through it.
 *
 * - Failed logins are counted per client address (IPv6 per /64) in a sliding window; at
 *   `maxFailures` the address is refused without a password check until the oldest failure
 *   leaves the window. A success resets nothing: it cannot buy more guesses at another account.
 * - An attempt reserves one of its address's slots *before* its password is checked (slots =
 *   maxFailures - recent failures), so concurrent attempts cannot all slip past the count: of 200
 *   simultaneous wrong logins, `maxFailures` are checked and the rest refused.
 * - Password checks (scrypt: tens of ms and 16 MiB each, on libuv's 4 threads, which the file
 *   system and LevelDB share) run at most `maxConcurrentChecks` at a time, taken round-robin
 *   over addresses: one address sending 300 logins at once waits for its own, not others'.
 * - At most `maxWaiting` attempts wait; beyond that an attempt is refused as busy at once.
 *
 * Pure apart from timers it does not use: the clock is injected, and settling is driven by the
 * checks' promises.
 */
import { isIPv6 } from 'node:net';

export interface LoginGuardOptions {
  /** Failed logins per address within `windowMs` before the address is refused. */
  maxFailures: number;
  windowMs: number;
  /** Password checks running at once (default 2: half of libuv's default thread pool). */
  maxConcurrentChecks?: number;
  /** Attempts waiting for a check, over all addresses (default 1000). */
  maxWaiting?: number;
  /** Addresses whose failures are remembered at most (least recently failed forgotten first). */
  maxAddresses?: number;
  now?: () => number;
}

export type LoginVerdict<T> =
  | { ok: true; value: T }
  /** The check said no (wrong name or password); counted against the address. */
  | { ok: false; reason: 'failed' }
  /** Too many failures from this address: refused without a check. */
  | { ok: false; reason: 'limited'; retryAfterMs: number }
  /** Too many attempts waiting: refused without a check (and not counted). */
  | { ok: false; reason: 'busy' };

export interface LoginGuardStats {
  checking: number;
  waiting: number;
  /** Addresses with recent failures. */
  addresses: number;
}

export interface LoginGuard {
  /**
   * Runs `check` (a password check: the principal, or null for a wrong name or password) when
   * the address may try and its turn has come. A check that throws settles the attempt with that
   * error and is not counted as a failure.
   */
  attempt<T>(address: string, check: () => Promise<T | null>): Promise<LoginVerdict<T>>;
  /** A failure found without a password check (e.g. an anonymous CONNECT). */
  recordFailure(address: string): void;
  /** ms until `address` may try again; 0 when it may now. */
  retryAfterMs(address: string): number;
  stats(): LoginGuardStats;
}

/** The key failures are counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64. */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head = '', tail] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

interface Waiter {
  run(): void;
  refuse(verdict: LoginVerdict<never>): void;
}

interface AddressState {
  /** Attempts whose check is running (each holds a slot). */
  checking: number;
  waiting: Waiter[];
}

export function createLoginGuard(options: LoginGuardOptions): LoginGuard {
  const { maxFailures, windowMs, maxConcurrentChecks = 2, maxWaiting = 1000, maxAddresses = 10_000, now = Date.now } = options;
  if (!(maxFailures >= 1) || !(windowMs > 0) || !(maxConcurrentChecks >= 1) || !(maxWaiting >= 0)) {
    throw new Error('login guard: maxFailures and maxConcurrentChecks must be >= 1, windowMs > 0, maxWaiting >= 0');
  }
  const failures = new Map<string, number[]>(); // key -> failure times, oldest first; Map order = least recently failed first
  const states = new Map<string, AddressState>();
  /** Addresses with waiting attempts, in round-robin order (served ones move to the back). */
  const turns = new Set<string>();
  let checking = 0;
  let waiting = 0;

  const recentFailures = (key: string): number[] => {
    const cutoff = now() - windowMs;
    const times = (failures.get(key) ?? []).filter((t) => t > cutoff);
    if (times.length === 0) failures.delete(key);
    else failures.set(key, times);
    return times;
  };
  const fail = (key: string) => {
    const times = recentFailures(key);
    times.push(now());
    failures.delete(key);
    failures.set(key, times.slice(-maxFailures));
    while (failures.size > maxAddresses) failures.delete(failures.keys().next().value!);
  };
  const retryAfter = (key: string): number => {
    const times = recentFailures(key);
    return times.length < maxFailures ? 0 : Math.max(1, times[times.length - maxFailures]! + windowMs - now());
  };
  const dropIfIdle = (key: string) => {
    const s = states.get(key);
    if (s && s.checking === 0 && s.waiting.length === 0) states.delete(key);
  };

  /** Starts checks while there is room, one address at a time in turn. */
  const pump = () => {
    while (checking < maxConcurrentChecks) {
      let started = false;
      for (const key of turns) {
        const s = states.get(key)!;
        const used = recentFailures(key).length;
        if (used >= maxFailures) {
          // Failures came in while these waited: refuse them all now.
          const retryAfterMs = retryAfter(key);
          for (const w of s.waiting.splice(0)) w.refuse({ ok: false, reason: 'limited', retryAfterMs });
          turns.delete(key);
          dropIfIdle(key);
          continue;
        }
        if (used + s.checking >= maxFailures) continue; // every slot reserved: wait for one to settle
        const w = s.waiting.shift()!;
        turns.delete(key);
        if (s.waiting.length > 0) turns.add(key); // to the back of the round
        w.run();
        started = true;
        break;
      }
      if (!started) return;
    }
  };

  return {
    attempt<T>(address: string, check: () => Promise<T | null>): Promise<LoginVerdict<T>> {
      const key = addressKey(address);
      const retryAfterMs = retryAfter(key);
      if (retryAfterMs > 0) return Promise.resolve({ ok: false, reason: 'limited', retryAfterMs });
      if (waiting >= maxWaiting) return Promise.resolve({ ok: false, reason: 'busy' });
      let s = states.get(key);
      if (!s) states.set(key, (s = { checking: 0, waiting: [] }));
      const state = s;
      return new Promise<LoginVerdict<T>>((resolve, reject) => {
        waiting += 1;
        state.waiting.push({
          refuse(verdict) {
            waiting -= 1;
            resolve(verdict);
          },
          run() {
            waiting -= 1;
            checking += 1;
            state.checking += 1;
            const settle = () => {
              checking -= 1;
              state.checking -= 1;
              dropIfIdle(key);
              pump();
            };
            let result: Promise<T | null>;
            try {
              result = check();
            } catch (error) {
              result = Promise.reject(error as Error);
            }
            result.then(
              (value) => {
                // Recorded before the slot is released, so no waiting attempt can take it meanwhile.
                if (value === null) fail(key);
                settle();
                resolve(value === null ? { ok: false, reason: 'failed' } : { ok: true, value });
              },
              (error: unknown) => {
                settle();
                reject(error instanceof Error ? error : new Error(String(error)));
              },
            );
          },
        });
        turns.add(key);
        pump();
      });
    },
    recordFailure(address) {
      fail(addressKey(address));
      pump();
    },
    retryAfterMs: (address) => retryAfter(addressKey(address)),
    stats: () => ({ checking, waiting, addresses: failures.size }),
  };
}
