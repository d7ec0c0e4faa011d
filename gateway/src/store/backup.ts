/**
 * Backup and restore of the gateway's state (gateway.sqlite: users, devices, alerts, screenings,
 * the series spool). Both use SQLite's online backup API (better-sqlite3 `backup()`), which
 * copies a consistent snapshot page by page while the gateway keeps writing: a backup needs no
 * downtime. A restore replaces the live file's content, so it belongs to a stopped gateway; the
 * state it replaces is first saved next to it, so a restore loses nothing either.
 */
import { chmodSync, existsSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openDatabase } from './db.js';

/** Tables a file must have to be taken for a gateway state backup. */
const REQUIRED_TABLES = ['screenings', 'devices', 'alerts', 'users', 'audit'];

export interface BackupSummary {
  file: string;
  bytes: number;
  tables: Record<string, number>;
}

export const gatewayDbFile = (dataDir: string): string => join(dataDir, 'gateway.sqlite');

/** Opens `file` read-only and checks that it is an intact gateway database; returns row counts. */
export function inspectBackup(file: string): Record<string, number> {
  if (!existsSync(file)) throw new Error(`backup ${file}: no such file`);
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new Error(`backup ${file}: cannot open as SQLite (${(err as Error).message})`, { cause: err });
  }
  try {
    let check: string;
    try {
      check = db.pragma('integrity_check', { simple: true }) as string;
    } catch (err) {
      throw new Error(`backup ${file}: not a SQLite database (${(err as Error).message})`, { cause: err });
    }
    if (check !== 'ok') throw new Error(`backup ${file}: integrity check failed: ${check}`);
    const tables = new Set(db.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((t) => t.name));
    const missing = REQUIRED_TABLES.filter((t) => !tables.has(t));
    if (missing.length > 0) throw new Error(`backup ${file}: not a gateway database (missing tables: ${missing.join(', ')})`);
    return Object.fromEntries(REQUIRED_TABLES.map((t) => [t, (db.prepare(`SELECT count(*) AS n FROM "${t}"`).get() as { n: number }).n]));
  } finally {
    db.close();
  }
}

/** Online backup of the data dir's gateway.sqlite into `dest` (mode 0600: it holds password hashes). */
export async function backupGateway(dataDir: string, dest: string): Promise<BackupSummary> {
  if (!existsSync(gatewayDbFile(dataDir))) throw new Error(`no gateway state in ${dataDir} (gateway.sqlite is missing): check --config / CHECKPOINT_DATA_DIR`);
  if (existsSync(dest)) throw new Error(`backup ${dest} already exists: choose a new file name`);
  const db = openDatabase(dataDir);
  const partial = `${dest}.partial`;
  try {
    const { totalPages } = await db.backup(partial);
    chmodSync(partial, 0o600);
    const tables = inspectBackup(partial);
    renameSync(partial, dest);
    return { file: dest, bytes: totalPages * (db.pragma('page_size', { simple: true }) as number), tables };
  } catch (err) {
    rmSync(partial, { force: true });
    throw err;
  } finally {
    db.close();
  }
}

export interface RestoreSummary {
  tables: Record<string, number>;
  /** Where the state that was replaced went (null when there was none). */
  previous: string | null;
}

/**
 * Replaces the data dir's gateway state with the backup `src` (checked first). The current state
 * is saved as gateway.sqlite.before-restore-<time> by the same online backup.
 */
export async function restoreGateway(dataDir: string, src: string, now: Date = new Date()): Promise<RestoreSummary> {
  const tables = inspectBackup(src);
  let previous: string | null = null;
  if (existsSync(gatewayDbFile(dataDir))) {
    previous = `${gatewayDbFile(dataDir)}.before-restore-${now.toISOString().replace(/[:.]/g, '-')}`;
    const current = openDatabase(dataDir);
    try {
      await current.backup(previous);
      chmodSync(previous, 0o600);
    } finally {
      current.close();
    }
  }
  const backup = new Database(src, { readonly: true, fileMustExist: true });
  try {
    // Into the live file through SQLite, so that its WAL and locks are honoured.
    await backup.backup(gatewayDbFile(dataDir));
  } finally {
    backup.close();
  }
  // Opening once brings the schema up to this version (CREATE IF NOT EXISTS) and checks it.
  openDatabase(dataDir).close();
  chmodSync(gatewayDbFile(dataDir), 0o600);
  return { tables, previous };
}
