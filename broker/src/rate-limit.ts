/**
 * Failed-login limiter per client address (pure; the clock is injected). After `maxFailures`
 * failures within `windowMs`, the address is refused without checking its password until the
 * oldest of those failures leaves the window. Successful logins do not reset the count, so one
 * valid account cannot be used to keep guessing another's password.
 */
export interface LoginLimiterOptions {
  maxFailures: number;
  windowMs: number;
  /** Addresses remembered at most (oldest forgotten first), so a scan cannot exhaust memory. */
  maxAddresses?: number;
  now?: () => number;
}

export interface LoginLimiter {
  /** Whether a login from `address` may be attempted now. */
  allows(address: string): boolean;
  recordFailure(address: string): void;
  /** How many addresses are currently tracked (for tests and metrics). */
  readonly size: number;
}

export function createLoginLimiter(options: LoginLimiterOptions): LoginLimiter {
  const { maxFailures, windowMs, maxAddresses = 10_000, now = Date.now } = options;
  if (!(maxFailures >= 1) || !(windowMs > 0)) throw new Error('login limiter: maxFailures must be >= 1 and windowMs > 0');
  const failures = new Map<string, number[]>(); // address -> failure times, oldest first

  const recent = (address: string): number[] => {
    const cutoff = now() - windowMs;
    const times = (failures.get(address) ?? []).filter((t) => t > cutoff);
    if (times.length === 0) failures.delete(address);
    else failures.set(address, times);
    return times;
  };

  return {
    allows: (address) => recent(address).length < maxFailures,
    recordFailure(address) {
      const times = recent(address);
      times.push(now());
      failures.delete(address); // re-insert: Map order = least recently failed first
      failures.set(address, times.slice(-maxFailures));
      while (failures.size > maxAddresses) failures.delete(failures.keys().next().value!);
    },
    get size() {
      return failures.size;
    },
  };
}
