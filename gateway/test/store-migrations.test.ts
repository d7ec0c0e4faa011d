/**
 * Versioned migrations of the gateway's SQLite file: a file made before versioning (the schema of
 * test/fixtures/schema-before-migrations.sql, user_version 0) upgrades in place with its data; a
 * new file gets every migration; a failing migration leaves the file as it was; a file from a
 * newer gateway is refused with a message that says so. Real SQLite files in temp dirs.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { makeTempDir } from '@checkpoint/test-support';
import { openDatabase } from '../src/store/db.js';
import { MIGRATIONS, migrate, type Migration } from '../src/store/migrations.js';
import { createOperationalStore } from '../src/store/operational.js';
import { createUserStore } from '../src/store/users.js';
import { makeScreening } from './helpers/world.js';

const OLD_SCHEMA = readFileSync(new URL('./fixtures/schema-before-migrations.sql', import.meta.url), 'utf8');
const LATEST = Math.max(...MIGRATIONS.map((m) => m.version));
const POLICY = { escalateAfterMs: 60_000, invalidStormCount: 5, invalidStormWindowMs: 60_000 };

/** A file as the gateway before migrations left it: its schema, some rows, user_version 0. */
function oldFile(dataDir: string, schema = OLD_SCHEMA): void {
  const db = new Database(join(dataDir, 'gateway.sqlite'));
  try {
    db.pragma('journal_mode = WAL');
    db.exec(schema);
    const s = makeScreening({ decision: 'secondary_check' });
    db.prepare(
      `INSERT INTO screenings (id, ts_ms, site, checkpoint, decision, mask, temperature_c, payload, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(s.id, Date.parse(s.ts), s.site, s.checkpoint, s.decision, s.mask, s.temperatureC, JSON.stringify(s), 1_000);
    db.prepare(
      `INSERT INTO alerts (id, kind, severity, status, site, checkpoint, screening_id, decision, reasons, count, opened_ms, last_ms) VALUES ('a1', 'screening', 'major', 'open', 'hq', 'gate-1', ?, 'secondary_check', '["fever"]', 1, 1000, 1000)`,
    ).run(s.id);
    for (let i = 0; i < 3; i++) db.prepare('INSERT INTO events (type, data, at_ms) VALUES (?, ?, ?)').run('screening', '{}', 1_000 + i);
    db.prepare('DELETE FROM events WHERE seq < 3').run();
    db.prepare('INSERT INTO users (name, role, password_hash, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?)').run('guard', 'guard', 'scrypt$x', 1, 1);
    db.prepare('INSERT INTO series_spool (point, enqueued_ms) VALUES (?, ?)').run(JSON.stringify({ measurement: 'screening', tags: {}, fields: {}, timeNs: '1' }), 1_000);
    expect(db.pragma('user_version', { simple: true })).toBe(0);
  } finally {
    db.close();
  }
}

describe('versioned migrations (SQLite)', () => {
  it('upgrades a file made before migrations in place, keeping its data', () => {
    const dataDir = makeTempDir('gw-migrate-old');
    oldFile(dataDir);
    const db = openDatabase(dataDir);
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(LATEST);
      const indexes = db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'alerts'").all().map((r) => r.name);
      expect(indexes).toContain('alerts_by_place');
      const store = createOperationalStore(db, POLICY, () => 'new-id');
      const [screening] = store.screenings({ limit: 10 });
      expect(screening?.decision).toBe('secondary_check');
      expect(store.alert('a1')).toMatchObject({ status: 'open', reasons: ['fever'], screening: { id: screening!.id } });
      // The live feed's sequence goes on where it was (ids are never reused).
      expect(store.eventRange()).toEqual({ first: 3, last: 3 });
      expect(store.spoolDepth()).toBe(1);
      expect(createUserStore(db).list().map((u) => u.name)).toEqual(['guard']);
      // And it takes new data.
      expect(store.ingestScreening(makeScreening(), 2_000).stored).toBe(true);
      expect(store.eventRange().last).toBe(4);
    } finally {
      db.close();
    }
    // Opening it again applies nothing.
    const again = openDatabase(dataDir);
    try {
      expect(migrate(again)).toEqual({ from: LATEST, to: LATEST, applied: [] });
    } finally {
      again.close();
    }
  });

  it('adds ts_replaced to a file older still (made before that column existed)', () => {
    const dataDir = makeTempDir('gw-migrate-older');
    const withoutColumn = OLD_SCHEMA.replace(/,\s*--[^\n]*\n\s*ts_replaced TEXT\n/, '\n');
    expect(withoutColumn).not.toContain('ts_replaced');
    oldFile(dataDir, withoutColumn);
    const db = openDatabase(dataDir);
    try {
      const columns = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('screenings')").all().map((c) => c.name);
      expect(columns).toContain('ts_replaced');
      expect(createOperationalStore(db, POLICY, () => 'x').screenings({ limit: 10 })).toHaveLength(1);
    } finally {
      db.close();
    }
  });

  it('gives a new file every migration, in order, recorded in user_version', () => {
    const db = new Database(join(makeTempDir('gw-migrate-new'), 'gateway.sqlite'));
    try {
      const report = migrate(db);
      expect(report.from).toBe(0);
      expect(report.to).toBe(LATEST);
      expect(report.applied.map((a) => Number(a.split(':')[0]))).toEqual(MIGRATIONS.map((m) => m.version));
    } finally {
      db.close();
    }
  });

  it('leaves the file as it was when a migration fails (one transaction)', () => {
    const db = new Database(join(makeTempDir('gw-migrate-fail'), 'gateway.sqlite'));
    const broken: Migration[] = [
      ...MIGRATIONS,
      { version: LATEST + 1, name: 'adds a table', up: (d) => d.exec('CREATE TABLE extra (x INTEGER)') },
      { version: LATEST + 2, name: 'fails', up: (d) => d.exec('ALTER TABLE no_such_table ADD COLUMN y INTEGER') },
    ];
    try {
      expect(() => migrate(db, broken)).toThrow(/no such table: no_such_table/);
      expect(db.pragma('user_version', { simple: true })).toBe(0);
      expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get()).toEqual({ n: 0 });
    } finally {
      db.close();
    }
  });

  it('refuses a file from a newer gateway, naming both versions', () => {
    const dataDir = makeTempDir('gw-migrate-newer');
    const db = new Database(join(dataDir, 'gateway.sqlite'));
    db.pragma(`user_version = ${LATEST + 5}`);
    db.close();
    expect(() => openDatabase(dataDir)).toThrow(new RegExp(`gateway.sqlite: database schema version ${LATEST + 5} is newer than this gateway knows \\(${LATEST}\\)`));
  });
});
