/**
 * `checkpoint-gateway`: run the gateway, manage API users. Every command finds the data dir the
 * same way: --config file, then CHECKPOINT_DATA_DIR.
 */
import { defaultIo, readFirstLine, waitForSignal, type CliIo } from '@checkpoint/broker';
export type { CliIo };
import { Command, CommanderError, Option } from 'commander';
import { loadGatewayConfig, redactUrl } from './config.js';
import { createGateway } from './gateway.js';
import { openDatabase } from './store/db.js';
import { backupGateway, restoreGateway } from './store/backup.js';
import { createUserStore, ROLES, type Role, type UserStore } from './store/users.js';
import pg from 'pg';
import { createSqliteAuditStore, type AuditStore } from './store/audit.js';
import { createSqliteDeviceStore } from './store/devices.js';
import { createPostgresDeviceStore } from './store/postgres/devices.js';
import { createPostgresProvisioningStore } from './store/postgres/provisioning.js';
import { createProvisioningStore } from './provisioning/store.js';
import type { Backend } from './store/backend.js';
import { migratePostgres } from './store/postgres/migrations.js';
import { createPostgresAuditStore } from './store/postgres/audit.js';
import { createPostgresUserStore } from './store/postgres/users.js';
import { join } from 'node:path';
import pino from 'pino';
import { createLoginGuard, openUserStore } from '@checkpoint/broker';
import { ID_PATTERN, checkpointVersion } from '@checkpoint/protocol';
import { ulid } from 'ulid';
import type { GatewayConfig } from './config.js';
import { createProvisioning, readCaCert, type DeviceRef } from './provisioning/index.js';

/** `SITE/CHECKPOINT`, both ids. */
function parseDevice(text: string): DeviceRef {
  const [site, checkpoint, ...rest] = text.split('/');
  const id = new RegExp(ID_PATTERN);
  if (!site || !checkpoint || rest.length > 0 || !id.test(site) || !id.test(checkpoint)) {
    throw new Error(`expected SITE/CHECKPOINT with ids matching ${ID_PATTERN}, got ${JSON.stringify(text)}`);
  }
  return { site, checkpoint };
}

/**
 * The user store (and audit trail) the gateway of this config uses: its SQLite file, or the shared
 * PostgreSQL database (migrated first, as the gateway does). Returns where that is, for messages.
 */
async function withUsers(config: GatewayConfig, work: (users: UserStore<Backend>, audit: AuditStore<Backend>) => Promise<void>): Promise<string> {
  if (config.store.backend === 'postgres') {
    const url = config.store.postgres.url!;
    const pool = new pg.Pool({ connectionString: url, max: 1, application_name: 'checkpoint-gateway-cli' });
    try {
      await migratePostgres(pool);
      await work(createPostgresUserStore(pool), createPostgresAuditStore(pool));
    } finally {
      await pool.end().catch(() => undefined);
    }
    return `PostgreSQL ${redactUrl(url)}`;
  }
  const db = openDatabase(config.dataDir);
  try {
    await work(createUserStore(db), createSqliteAuditStore(db));
  } finally {
    db.close();
  }
  return config.dataDir;
}

/** Backup and restore copy the SQLite file; PostgreSQL has its own tools. */
function refuseOnPostgres(config: GatewayConfig, command: 'backup' | 'restore'): void {
  if (config.store.backend !== 'postgres') return;
  throw new Error(`${command}: store.backend is postgres, whose state this command cannot copy; use PostgreSQL's own tools (pg_dump / pg_restore) on store.postgres.url`);
}

/**
 * Provisioning in the store of the config (its SQLite file, or the shared PostgreSQL database,
 * migrated first) and the broker users file of the config, for one CLI command.
 */
async function withProvisioning<T>(config: GatewayConfig, run: (p: ReturnType<typeof createProvisioning>) => Promise<T>): Promise<T> {
  const file = config.provisioning.brokerUsersFile;
  if (!file) throw new Error("provisioning.brokerUsersFile is not set: point it at the broker's users.sqlite (config file)");
  const postgres = config.store.backend === 'postgres' ? new pg.Pool({ connectionString: config.store.postgres.url!, max: 2, application_name: 'checkpoint-gateway-cli' }) : null;
  const db = postgres ? null : openDatabase(config.dataDir);
  const credentials = openUserStore(file);
  try {
    if (postgres) await migratePostgres(postgres);
    const store = postgres ? createPostgresProvisioningStore(postgres) : createProvisioningStore(db!, config.provisioning.modelsDir ?? join(config.dataDir, 'models'));
    const audit = postgres ? createPostgresAuditStore(postgres) : createSqliteAuditStore(db!);
    const seen = await (postgres ? createPostgresDeviceStore(postgres) : createSqliteDeviceStore(db!)).list();
    const provisioning = createProvisioning({
      store,
      credentials,
      // The CLI serves no downloads; a guard is still the only way to check a device's password.
      loginGuard: createLoginGuard({ maxFailures: config.auth.loginMaxFailures, windowMs: config.auth.loginWindowS * 1000 }),
      sendCommand: () => Promise.reject(new Error('the CLI sends no commands')),
      // Roll-outs are the gateways' business: the CLI never sends their commands.
      drives: () => false,
      audit: (atMs, actor, action, target, detail) => audit.append(atMs, actor, action, target, detail ?? null),
      seenDevices: () => seen.map((d) => ({ site: d.site, checkpoint: d.checkpoint, model: d.model })),
      settings: {
        deviceMqttUrl: config.provisioning.deviceMqttUrl ?? config.mqtt.url,
        caCert: readCaCert(config.provisioning.caFile),
        tokenTtlMs: config.provisioning.tokenTtlS * 1000,
        updateTimeoutMs: config.provisioning.updateTimeoutS * 1000,
        publicUrl: () => config.provisioning.publicUrl ?? `https://<gateway>:${config.http.port}`,
      },
      log: pino({ level: 'silent' }),
      now: Date.now,
      newId: ulid,
    });
    return await run(provisioning);
  } finally {
    credentials.close();
    db?.close();
    await postgres?.end().catch(() => undefined);
  }
}

export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const program = new Command('checkpoint-gateway')
    .description('Checkpoint gateway: MQTT ingest to InfluxDB/SQLite, alert workflow, HTTP API')
    .version(checkpointVersion())
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  const configOption = () => new Option('-c, --config <file>', 'config file (YAML or JSON)');

  program
    .command('run')
    .description('run the gateway until SIGINT/SIGTERM')
    .addOption(configOption())
    .action(async (opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      const gateway = await createGateway(config);
      const signal = await (io.shutdownSignal ?? waitForSignal());
      io.stderr.write(`${signal}: shutting down\n`);
      await gateway.close();
    });

  const user = program.command('user').description('API users (in the store of the config: the data dir / CHECKPOINT_DATA_DIR, or PostgreSQL)');
  user
    .command('add <name>')
    .description('add a user or replace its role and password; the password is read from stdin')
    .addOption(new Option('--role <role>', 'guard | dispatcher | engineer | admin').choices([...ROLES]).makeOptionMandatory())
    .addOption(configOption())
    .action(async (name: string, opts: { role: Role; config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      const password = await readFirstLine(io.stdin);
      const where = await withUsers(config, async (users, audit) => {
        await users.add({ name, role: opts.role }, password);
        await audit.append(Date.now(), 'cli', 'user.add', name, { role: opts.role });
      });
      io.stdout.write(`user ${name} (${opts.role}) saved in ${where}\n`);
    });
  user
    .command('list')
    .addOption(configOption())
    .action(async (opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      await withUsers(config, async (users) => {
        for (const u of await users.list()) io.stdout.write(`${u.name}\t${u.role}\t${u.createdAt}\n`);
      });
    });
  user
    .command('remove <name>')
    .addOption(configOption())
    .action(async (name: string, opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      await withUsers(config, async (users) => {
        if (!(await users.remove(name))) throw new Error(`no user ${name}`);
      });
      io.stdout.write(`user ${name} removed\n`);
    });

  const device = program.command('device').description('edge devices: enrollment tokens and revocation (needs provisioning.brokerUsersFile)');
  device
    .command('add <site/checkpoint>')
    .description('register a checkpoint (or re-issue its token) and print a one-time enrollment token')
    .addOption(configOption())
    .action(async (where: string, opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      const d = parseDevice(where);
      const issued = await withProvisioning(config, (p) => p.register(d, 'cli'));
      const gatewayUrl = config.provisioning.publicUrl ?? `https://<this gateway>:${config.http.port}`;
      io.stdout.write(`checkpoint ${d.site}/${d.checkpoint} registered; one-time enrollment token (valid until ${issued.expiresAt}):\n${issued.token}\n`);
      io.stdout.write(`on the edge box: edge-agent enroll --gateway ${gatewayUrl} --token ${issued.token}\n`);
    });
  device
    .command('list')
    .addOption(configOption())
    .action(async (opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      for (const d of await withProvisioning(config, (p) => p.devices())) {
        io.stdout.write(`${d.site}/${d.checkpoint}\t${d.status}\t${d.model ? `${d.model.name} ${d.model.sha256.slice(0, 12)}` : '-'}\n`);
      }
    });
  device
    .command('revoke <site/checkpoint>')
    .description("remove the device's broker user; the broker drops its connection within a second")
    .addOption(configOption())
    .action(async (where: string, opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      const result = await withProvisioning(config, (p) => p.revoke(parseDevice(where), 'cli'));
      io.stdout.write(`${where} revoked${result.brokerUserRemoved ? `; broker user ${result.brokerUserRemoved} removed` : ' (it had no broker user)'}\n`);
    });

  program
    .command('backup <file>')
    .description("online backup of the gateway's state (users, devices, alerts, screenings) into a new SQLite file; the gateway may keep running")
    .addOption(configOption())
    .action(async (file: string, opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      refuseOnPostgres(config, 'backup');
      const done = await backupGateway(config.dataDir, file);
      io.stdout.write(`backup of ${config.dataDir} written to ${done.file} (${done.bytes} bytes; ${Object.entries(done.tables).map(([t, n]) => `${t} ${n}`).join(', ')})\n`);
    });
  program
    .command('restore <file>')
    .description("replace the gateway's state with a backup (stop the gateway first); the replaced state is kept beside it")
    .addOption(configOption())
    .action(async (file: string, opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      refuseOnPostgres(config, 'restore');
      const done = await restoreGateway(config.dataDir, file);
      io.stdout.write(`restored ${file} into ${config.dataDir} (${Object.entries(done.tables).map(([t, n]) => `${t} ${n}`).join(', ')})${done.previous ? `; the previous state is in ${done.previous}` : ''}\n`);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    io.stderr.write(`checkpoint-gateway: ${(err as Error).message}\n`);
    return 1;
  }
}
