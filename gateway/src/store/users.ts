/**
 * API users and their sessions. Passwords: scrypt (node:crypto), self-describing hash strings
 * (the same format as the broker's user store). Tokens: 32 random bytes handed out once; only
 * their SHA-256 is stored, so a copy of the database does not log anyone in.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { Backend, Result } from './backend.js';
import type { Db } from './db.js';

export const ROLES = ['guard', 'dispatcher', 'engineer', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Roles are ordered: each one may do what the ones before it may. */
export function roleAtLeast(role: Role, required: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(required);
}

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

export const USER_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
export const MIN_PASSWORD_LENGTH = 8;

const SCRYPT = { N: 16384, r: 8, p: 1 };
const KEY_LEN = 32;

function scryptAsync(password: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: 256 * params.N * params.r };
  return new Promise((resolve, reject) => scrypt(password, salt, KEY_LEN, options, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT);
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), key.toString('base64')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const expected = Buffer.from(parts[5]!, 'base64');
  const key = await scryptAsync(password, Buffer.from(parts[4]!, 'base64'), { N, r, p });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

export interface UserRecord {
  name: string;
  role: Role;
  createdAt: string;
}

export interface Session {
  user: string;
  role: Role;
  expiresMs: number;
  /** When the user signed in with a password; renewed tokens carry it over. */
  signedInMs: number;
}

export interface UserStore<B extends Backend = 'sync'> {
  /** Adds a user, or replaces the role and password of an existing one. */
  add(user: { name: string; role: Role }, password: string): Promise<void>;
  remove(name: string): Result<boolean, B>;
  list(): Result<UserRecord[], B>;
  /** The user's role when the password is right, else null (same cost for unknown names). */
  verify(name: string, password: string): Promise<Role | null>;
  /**
   * A new bearer token (returned once; stored hashed). `signedInMs`: when the user signed in
   * (default now); a renewal passes the old session's, so a session has an absolute limit.
   */
  createSession(name: string, ttlMs: number, nowMs: number, signedInMs?: number): Result<{ token: string; expiresMs: number }, B>;
  session(token: string, nowMs: number): Result<Session | null, B>;
  endSession(token: string): Result<void, B>;
  pruneSessions(nowMs: number): Result<number, B>;
}

/** Throws, naming what is wrong, unless name, role and password may be stored (both backends). */
export function checkNewUser(name: string, role: string, password: string): void {
  if (!new RegExp(USER_NAME_PATTERN).test(name)) throw new Error(`invalid user name ${JSON.stringify(name)}: expected ${USER_NAME_PATTERN}`);
  if (!isRole(role)) throw new Error(`invalid role ${JSON.stringify(role)}: expected one of ${ROLES.join(', ')}`);
  if (password.length < MIN_PASSWORD_LENGTH) throw new Error(`password too short: at least ${MIN_PASSWORD_LENGTH} characters`);
}

/**
 * Checks a password against a user's stored hash, or against a throw-away hash for an unknown
 * name (the same cost, so timing does not tell which names exist); made on first use.
 */
export function passwordChecker(): (password: string, storedHash: string | undefined) => Promise<boolean> {
  let dummy: Promise<string> | null = null;
  return async (password, storedHash) => verifyPassword(password, storedHash ?? (await (dummy ??= hashPassword(randomBytes(16).toString('hex')))));
}

/** A new bearer token: the token (handed out once) and its hash (stored). */
export function newSessionToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: tokenHash(token) };
}

export const tokenHash = (token: string): string => createHash('sha256').update(token).digest('hex');

export function createUserStore(db: Db, now: () => number = Date.now): UserStore {
  const passwordMatches = passwordChecker();
  const getUser = db.prepare<[string], { name: string; role: Role; password_hash: string }>('SELECT name, role, password_hash FROM users WHERE name = ?');
  return {
    async add({ name, role }, password) {
      checkNewUser(name, role, password);
      const hash = await hashPassword(password);
      const t = now();
      db.prepare(
        `INSERT INTO users (name, role, password_hash, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash, updated_ms = excluded.updated_ms`,
      ).run(name, role, hash, t, t);
      // A changed password or role ends the user's sessions.
      db.prepare('DELETE FROM sessions WHERE user = ?').run(name);
    },
    remove(name) {
      return db.prepare('DELETE FROM users WHERE name = ?').run(name).changes > 0;
    },
    list() {
      return db
        .prepare<[], { name: string; role: Role; created_ms: number }>('SELECT name, role, created_ms FROM users ORDER BY name')
        .all()
        .map((u) => ({ name: u.name, role: u.role, createdAt: new Date(u.created_ms).toISOString() }));
    },
    async verify(name, password) {
      const user = getUser.get(name);
      const ok = await passwordMatches(password, user?.password_hash);
      return ok && user ? user.role : null;
    },
    createSession(name, ttlMs, nowMs, signedInMs = nowMs) {
      const { token, hash } = newSessionToken();
      const expiresMs = nowMs + ttlMs;
      // created_ms is when the user signed in (carried over by renewals), not when this token was made.
      db.prepare('INSERT INTO sessions (token_hash, user, created_ms, expires_ms) VALUES (?, ?, ?, ?)').run(hash, name, signedInMs, expiresMs);
      return { token, expiresMs };
    },
    session(token, nowMs) {
      const row = db
        .prepare<[string], { user: string; role: Role; expires_ms: number; created_ms: number }>(
          'SELECT s.user, u.role, s.expires_ms, s.created_ms FROM sessions s JOIN users u ON u.name = s.user WHERE s.token_hash = ?',
        )
        .get(tokenHash(token));
      if (!row || row.expires_ms <= nowMs) return null;
      return { user: row.user, role: row.role, expiresMs: row.expires_ms, signedInMs: row.created_ms };
    },
    endSession(token) {
      db.prepare('DELETE FROM sessions WHERE token_hash = ?').run(tokenHash(token));
    },
    pruneSessions(nowMs) {
      return db.prepare('DELETE FROM sessions WHERE expires_ms <= ?').run(nowMs).changes;
    },
  };
}
