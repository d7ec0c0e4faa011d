/**
 * The user store: one SQLite file (better-sqlite3, WAL) that the broker reads on every CONNECT
 * and that the management CLI, and later the gateway, edit. Passwords are kept only as hashes.
 */
import Database from 'better-sqlite3';
import { assertBinding, ROLES, type Principal, type Role } from './acl.js';
import { dummyPasswordHash, hashPassword, mosquittoPasswordHash, natsPasswordHash, verifyPassword, type ScryptParams } from './passwords.js';

export type UserRecord = Principal & { createdAt: string; updatedAt: string };

export interface UserStore {
  /** Adds a user; throws if the name is taken or the binding is invalid. */
  add(user: Principal, password: string): Promise<void>;
  get(name: string): UserRecord | undefined;
  list(): UserRecord[];
  /** Returns whether the user existed. */
  remove(name: string): boolean;
  /** Throws if the user does not exist. */
  setPassword(name: string, password: string): Promise<void>;
  /** The user if the password is right, else null; unknown names take as long as wrong passwords. */
  verify(name: string, password: string): Promise<Principal | null>;
  /**
   * Binds `clientId` to `user` (claimed on first use, kept across restarts) unless another user
   * holds it; returns the holder then. A user keeps at most MAX_CLIENT_IDS_PER_USER ids (its least
   * recently used one is released), so a client with random ids cannot grow the table.
   */
  claimClientId(user: string, clientId: string): { ok: true } | { ok: false; owner: string };
  /** `name` and `$7$` hash of every user that has one, for Mosquitto's password file. */
  mosquittoCredentials(): Array<{ name: string; hash: string }>;
  /** `name` and bcrypt hash of every user that has one, for nats-export. */
  natsCredentials(): Array<{ name: string; hash: string }>;
  close(): void;
}

export interface UserStoreOptions {
  /** PBKDF2 iterations of the Mosquitto-format hash kept next to scrypt; 0 keeps none (default 20000). */
  mosquittoHashIterations?: number;
  /** bcrypt cost of the NATS-format hash kept for nats-export; 0 keeps none (default 0). */
  natsBcryptCost?: number;
  /** scrypt cost (tests lower it). */
  scrypt?: ScryptParams;
}

interface Row {
  name: string;
  role: string;
  binding: string;
  password_hash: string;
  mosquitto_hash: string | null;
  nats_hash: string | null;
  created_at: string;
  updated_at: string;
}

const MIN_PASSWORD_LENGTH = 8;
/** Client ids one user may hold (a gateway or device needs one; tools may add a few). */
export const MAX_CLIENT_IDS_PER_USER = 16;

function checkPassword(name: string, password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new Error(`password for user ${JSON.stringify(name)} is too short: at least ${MIN_PASSWORD_LENGTH} characters`);
  }
  if (/[\r\n]/.test(password)) throw new Error(`password for user ${JSON.stringify(name)} must not contain line breaks`);
}

/** The role-specific part of a principal, stored as JSON. */
function bindingOf(p: Principal): object {
  switch (p.role) {
    case 'edge':
      return { site: p.site, checkpoint: p.checkpoint };
    case 'robot':
      return { robot: p.robot };
    case 'bridge':
      return { robots: p.robots };
    default:
      return {};
  }
}

function toRecord(row: Row, file: string): UserRecord {
  if (!(ROLES as readonly string[]).includes(row.role)) {
    throw new Error(`${file}: user ${JSON.stringify(row.name)} has unknown role ${JSON.stringify(row.role)}`);
  }
  const principal = { name: row.name, role: row.role as Role, ...JSON.parse(row.binding) } as Principal;
  assertBinding(principal);
  return { ...principal, createdAt: row.created_at, updatedAt: row.updated_at };
}

export function openUserStore(file: string, options: UserStoreOptions = {}): UserStore {
  const iterations = options.mosquittoHashIterations ?? 20_000;
  const bcryptCost = options.natsBcryptCost ?? 0;
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (error) {
    throw new Error(`cannot open user store ${file}: ${(error as Error).message}`, { cause: error });
  }
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000'); // the CLI and a running broker share the file
  db.exec(`CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    binding TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    mosquitto_hash TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
  ) STRICT`);
  // Stores made before nats-export have no column for the bcrypt copy.
  if (!db.prepare<[], { name: string }>('SELECT name FROM pragma_table_info(\'users\')').all().some((c) => c.name === 'nats_hash')) {
    db.exec('ALTER TABLE users ADD COLUMN nats_hash TEXT');
  }
  // Which user a client id (and so its persistent session) belongs to; see claimClientId.
  db.exec(`CREATE TABLE IF NOT EXISTS client_ids (
    client_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    last_used_ms INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX IF NOT EXISTS client_ids_by_user ON client_ids (user, last_used_ms)`);
  const stmt = {
    get: db.prepare<[string], Row>('SELECT * FROM users WHERE name = ?'),
    list: db.prepare<[], Row>('SELECT * FROM users ORDER BY name'),
    insert: db.prepare(
      'INSERT INTO users (name, role, binding, password_hash, mosquitto_hash, nats_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    remove: db.prepare('DELETE FROM users WHERE name = ?'),
    setPassword: db.prepare('UPDATE users SET password_hash = ?, mosquitto_hash = ?, nats_hash = ?, updated_at = ? WHERE name = ?'),
    clientIdOwner: db.prepare<[string], { user: string }>('SELECT user FROM client_ids WHERE client_id = ?'),
    claimClientId: db.prepare('INSERT INTO client_ids (client_id, user, last_used_ms) VALUES (?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET last_used_ms = excluded.last_used_ms'),
    releaseOldClientIds: db.prepare(
      'DELETE FROM client_ids WHERE user = ? AND client_id NOT IN (SELECT client_id FROM client_ids WHERE user = ? ORDER BY last_used_ms DESC, client_id LIMIT ?)',
    ),
    releaseClientIds: db.prepare('DELETE FROM client_ids WHERE user = ?'),
  };
  // Check and claim in one write transaction, so two brokers or CONNECTs cannot both win an id.
  const claim = db.transaction((user: string, clientId: string): { ok: true } | { ok: false; owner: string } => {
    const owner = stmt.clientIdOwner.get(clientId)?.user;
    if (owner !== undefined && owner !== user) return { ok: false, owner };
    stmt.claimClientId.run(clientId, user, Date.now());
    if (owner === undefined) stmt.releaseOldClientIds.run(user, user, MAX_CLIENT_IDS_PER_USER);
    return { ok: true };
  });
  const hashes = async (password: string) => ({
    scrypt: await hashPassword(password, options.scrypt),
    mosquitto: iterations > 0 ? await mosquittoPasswordHash(password, iterations) : null,
    nats: bcryptCost > 0 ? await natsPasswordHash(password, bcryptCost) : null,
  });

  return {
    async add(user, password) {
      assertBinding(user);
      checkPassword(user.name, password);
      if (stmt.get.get(user.name)) throw new Error(`user ${JSON.stringify(user.name)} already exists`);
      const h = await hashes(password);
      const now = new Date().toISOString();
      try {
        stmt.insert.run(user.name, user.role, JSON.stringify(bindingOf(user)), h.scrypt, h.mosquitto, h.nats, now, now);
      } catch (error) {
        if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new Error(`user ${JSON.stringify(user.name)} already exists`);
        throw error;
      }
    },
    get(name) {
      const row = stmt.get.get(name);
      return row ? toRecord(row, file) : undefined;
    },
    list() {
      return stmt.list.all().map((row) => toRecord(row, file));
    },
    remove(name) {
      // Its client ids go with it (a new user of the same name starts without any).
      return db.transaction(() => {
        stmt.releaseClientIds.run(name);
        return stmt.remove.run(name).changes > 0;
      }).immediate();
    },
    async setPassword(name, password) {
      checkPassword(name, password);
      if (!stmt.get.get(name)) throw new Error(`no user ${JSON.stringify(name)}`);
      const h = await hashes(password);
      stmt.setPassword.run(h.scrypt, h.mosquitto, h.nats, new Date().toISOString(), name);
    },
    async verify(name, password) {
      const row = stmt.get.get(name);
      const ok = await verifyPassword(password, row?.password_hash ?? (await dummyPasswordHash(options.scrypt)));
      if (!row || !ok) return null;
      const { createdAt: _c, updatedAt: _u, ...principal } = toRecord(row, file);
      return principal as Principal;
    },
    claimClientId(user, clientId) {
      return claim.immediate(user, clientId);
    },
    mosquittoCredentials() {
      return stmt.list
        .all()
        .filter((row): row is Row & { mosquitto_hash: string } => row.mosquitto_hash !== null)
        .map((row) => ({ name: row.name, hash: row.mosquitto_hash }));
    },
    natsCredentials() {
      return stmt.list
        .all()
        .filter((row): row is Row & { nats_hash: string } => row.nats_hash !== null)
        .map((row) => ({ name: row.name, hash: row.nats_hash }));
    },
    close() {
      db.close();
    },
  };
}
