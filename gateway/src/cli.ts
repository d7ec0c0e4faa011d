/**
 * `checkpoint-gateway`: run the gateway, manage API users. Every command finds the data dir the
 * same way: --config file, then CHECKPOINT_DATA_DIR.
 */
import type { Readable, Writable } from 'node:stream';
import { Command, CommanderError, Option } from 'commander';
import { loadGatewayConfig } from './config.js';
import { createGateway } from './gateway.js';
import { openDatabase } from './store/db.js';
import { createUserStore, ROLES, type Role } from './store/users.js';

export interface CliIo {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: Readonly<Record<string, string | undefined>>;
  /** Resolves when the program should stop (default: SIGINT or SIGTERM). */
  shutdownSignal?: Promise<string>;
}

function defaultIo(): CliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
}

function waitForSignal(): Promise<string> {
  return new Promise((resolve) => {
    const onSignal = (signal: string) => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** First line of stdin (`echo "$PW" | checkpoint-gateway user add NAME --role guard`). */
async function readFirstLine(stdin: Readable): Promise<string> {
  let text = '';
  for await (const chunk of stdin) {
    text += chunk.toString();
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}

export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const program = new Command('checkpoint-gateway')
    .description('Checkpoint gateway: MQTT ingest to InfluxDB/SQLite, alert workflow, HTTP API')
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

  const user = program.command('user').description('API users (on the data dir of the config / CHECKPOINT_DATA_DIR)');
  user
    .command('add <name>')
    .description('add a user or replace its role and password; the password is read from stdin')
    .addOption(new Option('--role <role>', 'guard | dispatcher | engineer | admin').choices([...ROLES]).makeOptionMandatory())
    .addOption(configOption())
    .action(async (name: string, opts: { role: Role; config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      const password = await readFirstLine(io.stdin);
      const db = openDatabase(config.dataDir);
      try {
        await createUserStore(db).add({ name, role: opts.role }, password);
        db.prepare('INSERT INTO audit (at_ms, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)').run(Date.now(), 'cli', 'user.add', name, JSON.stringify({ role: opts.role }));
      } finally {
        db.close();
      }
      io.stdout.write(`user ${name} (${opts.role}) saved in ${config.dataDir}\n`);
    });
  user
    .command('list')
    .addOption(configOption())
    .action(async (opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      const db = openDatabase(config.dataDir);
      try {
        for (const u of createUserStore(db).list()) io.stdout.write(`${u.name}\t${u.role}\t${u.createdAt}\n`);
      } finally {
        db.close();
      }
    });
  user
    .command('remove <name>')
    .addOption(configOption())
    .action(async (name: string, opts: { config?: string }) => {
      const config = await loadGatewayConfig(opts.config, io.env);
      const db = openDatabase(config.dataDir);
      try {
        if (!createUserStore(db).remove(name)) throw new Error(`no user ${name}`);
      } finally {
        db.close();
      }
      io.stdout.write(`user ${name} removed\n`);
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
