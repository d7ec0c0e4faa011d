/**
 * Revocation: a connected client whose broker user was removed, re-bound (other role, site,
 * checkpoint or robots) or given a new password is disconnected within one poll, so that a
 * revoked device is locked out at once rather than at its next reconnect.
 *
 * The user store is a SQLite file that the gateway — often another process — edits. SQLite's
 * `PRAGMA data_version` on a connection of our own changes whenever any other connection commits
 * to the file, so an idle poll costs one pragma; only after a change are the connected users
 * looked up again. Without a file to watch (a store handed in by a caller) every poll looks the
 * connected users up (one indexed SELECT each).
 */
import Database from 'better-sqlite3';
import type { Principal } from './acl.js';
import type { UserRecord, UserStore } from './user-store.js';

/** What the broker knew about a user when it let the client in. */
export interface Admission {
  principal: Principal;
  /** The user record's `updatedAt` then: it changes with the password. */
  updatedAt: string | null;
}

const bindingKey = (p: Principal | UserRecord): string => {
  const { name: _n, createdAt: _c, updatedAt: _u, ...rest } = p as Principal & Partial<UserRecord>;
  return JSON.stringify(rest, Object.keys(rest).sort());
};

/** Why a client admitted as `admission` must go, given the user's record now; null = it may stay. Pure. */
export function revocationReason(admission: Admission, current: UserRecord | undefined): string | null {
  if (!current) return 'user removed';
  if (bindingKey(current) !== bindingKey(admission.principal)) return 'role or binding changed';
  if (admission.updatedAt !== null && current.updatedAt !== admission.updatedAt) return 'password changed';
  return null;
}

export interface RevocationOptions<C> {
  users: UserStore;
  /** The SQLite file behind `users`, watched with `PRAGMA data_version`; null = look every poll. */
  file: string | null;
  intervalMs?: number;
  /** Called once per client to drop, with the reason (the watcher forgets the client). */
  revoke(client: C, admission: Admission, reason: string): void;
  /** True for a client whose connection is already closed (forgotten without a revocation). */
  isGone?(client: C): boolean;
  onError?(error: Error): void;
}

export interface RevocationWatcher<C> {
  /** A client was let in as `principal`. */
  admitted(client: C, principal: Principal): void;
  /** A client went away. */
  forget(client: C): void;
  /** Check every connected client now; returns how many were revoked. */
  check(): number;
  close(): void;
}

export function watchRevocations<C>(options: RevocationOptions<C>): RevocationWatcher<C> {
  const admitted = new Map<C, Admission>();
  let watch: Database.Database | null = null;
  if (options.file) {
    try {
      watch = new Database(options.file, { fileMustExist: true });
      watch.pragma('busy_timeout = 5000');
    } catch (error) {
      options.onError?.(new Error(`cannot watch ${options.file} for revocations (every poll checks all users instead): ${(error as Error).message}`));
      watch = null;
    }
  }
  const dataVersion = () => (watch ? (watch.pragma('data_version', { simple: true }) as number) : null);
  let lastVersion = dataVersion();

  function check(): number {
    let revoked = 0;
    for (const [client, admission] of admitted) {
      if (options.isGone?.(client)) {
        admitted.delete(client);
        continue;
      }
      const reason = revocationReason(admission, options.users.get(admission.principal.name));
      if (!reason) continue;
      admitted.delete(client);
      revoked++;
      options.revoke(client, admission, reason);
    }
    return revoked;
  }

  const timer = setInterval(() => {
    try {
      if (admitted.size === 0 && watch) {
        lastVersion = dataVersion();
        return;
      }
      const version = dataVersion();
      if (version !== null && version === lastVersion) return;
      lastVersion = version;
      check();
    } catch (error) {
      options.onError?.(error as Error);
    }
  }, options.intervalMs ?? 500);
  timer.unref();

  return {
    admitted(client, principal) {
      const record = options.users.get(principal.name);
      const admission = { principal, updatedAt: record?.updatedAt ?? null };
      // Removed between the password check and now: a poll may already have run, so do not wait for the next change.
      if (record) admitted.set(client, admission);
      else setImmediate(() => options.revoke(client, admission, 'user removed'));
    },
    forget(client) {
      admitted.delete(client);
    },
    check,
    close() {
      clearInterval(timer);
      admitted.clear();
      watch?.close();
      watch = null;
    },
  };
}
