/** API users and their sessions on PostgreSQL (the contract: ../users.ts; the same hashes and tokens). */
import { checkNewUser, hashPassword, newSessionToken, passwordChecker, tokenHash, type Role, type UserStore } from '../users.js';
import { inTransaction, num, type Queryable } from './values.js';

export function createPostgresUserStore(pool: Queryable, now: () => number = Date.now): UserStore<'async'> {
  const passwordMatches = passwordChecker();
  return {
    async add({ name, role }, password) {
      checkNewUser(name, role, password);
      const hash = await hashPassword(password);
      const t = now();
      await inTransaction(pool, async (tx) => {
        await tx.query(
          `INSERT INTO users (name, role, password_hash, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $4)
           ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash, updated_ms = excluded.updated_ms`,
          [name, role, hash, t],
        );
        // A changed password or role ends the user's sessions.
        await tx.query('DELETE FROM sessions WHERE user_name = $1', [name]);
      });
    },
    async remove(name) {
      return ((await pool.query('DELETE FROM users WHERE name = $1', [name])).rowCount ?? 0) > 0;
    },
    async list() {
      const { rows } = await pool.query<{ name: string; role: Role; created_ms: string }>('SELECT name, role, created_ms FROM users ORDER BY name COLLATE "C"');
      return rows.map((u) => ({ name: u.name, role: u.role, createdAt: new Date(num(u.created_ms)).toISOString() }));
    },
    async verify(name, password) {
      const { rows } = await pool.query<{ role: Role; password_hash: string }>('SELECT role, password_hash FROM users WHERE name = $1', [name]);
      const user = rows[0];
      const ok = await passwordMatches(password, user?.password_hash);
      return ok && user ? user.role : null;
    },
    async createSession(name, ttlMs, nowMs, signedInMs = nowMs) {
      const { token, hash } = newSessionToken();
      const expiresMs = nowMs + ttlMs;
      // created_ms is when the user signed in (carried over by renewals), as on SQLite.
      await pool.query('INSERT INTO sessions (token_hash, user_name, created_ms, expires_ms) VALUES ($1, $2, $3, $4)', [hash, name, signedInMs, expiresMs]);
      return { token, expiresMs };
    },
    async session(token, nowMs) {
      const { rows } = await pool.query<{ user_name: string; role: Role; expires_ms: string; created_ms: string }>(
        'SELECT s.user_name, u.role, s.expires_ms, s.created_ms FROM sessions s JOIN users u ON u.name = s.user_name WHERE s.token_hash = $1',
        [tokenHash(token)],
      );
      const row = rows[0];
      if (!row || num(row.expires_ms) <= nowMs) return null;
      return { user: row.user_name, role: row.role, expiresMs: num(row.expires_ms), signedInMs: num(row.created_ms) };
    },
    async endSession(token) {
      await pool.query('DELETE FROM sessions WHERE token_hash = $1', [tokenHash(token)]);
    },
    async pruneSessions(nowMs) {
      return (await pool.query('DELETE FROM sessions WHERE expires_ms <= $1', [nowMs])).rowCount ?? 0;
    },
  };
}
