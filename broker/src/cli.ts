/**
 * `checkpoint-broker`: run the broker, manage its users, export them to Mosquitto.
 * Every command finds the data dir the same way: --config file, then CHECKPOINT_DATA_DIR.
 */
import { defaultIo, readFirstLine, waitForSignal, type CliIo } from './cli-io.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { checkpointVersion } from '@checkpoint/protocol';
import { ROLES, type Principal, type Role } from './acl.js';
import { createBroker } from './broker.js';
import { loadBrokerConfig, type BrokerConfig } from './config.js';
import { exportMosquitto } from './mosquitto.js';
import { exportNats } from './nats-export.js';
import { generatePassword } from './passwords.js';
import { openUserStore, type UserRecord } from './user-store.js';

function parseRobot(value: string, previous: Array<{ manufacturer: string; serialNumber: string }> = []) {
  const [manufacturer, serialNumber, ...rest] = value.split('/');
  if (!manufacturer || !serialNumber || rest.length > 0) throw new InvalidArgumentError(`expected MANUFACTURER/SERIAL, got ${JSON.stringify(value)}`);
  return [...previous, { manufacturer, serialNumber }];
}

interface UserAddOptions {
  role: Role;
  site?: string;
  checkpoint?: string;
  robot?: Array<{ manufacturer: string; serialNumber: string }>;
  passwordStdin?: boolean;
}

function principalFrom(name: string, o: UserAddOptions): Principal {
  const need = (what: string, ok: boolean) => {
    if (!ok) throw new Error(`role ${o.role} ${what}`);
  };
  switch (o.role) {
    case 'edge':
      need('needs --site and --checkpoint (and no --robot)', !!o.site && !!o.checkpoint && !o.robot);
      return { name, role: 'edge', site: o.site!, checkpoint: o.checkpoint! };
    case 'robot':
      need('needs exactly one --robot MANUFACTURER/SERIAL (and no --site/--checkpoint)', o.robot?.length === 1 && !o.site && !o.checkpoint);
      return { name, role: 'robot', robot: o.robot![0]! };
    case 'bridge':
      need('needs one or more --robot MANUFACTURER/SERIAL (and no --site/--checkpoint)', (o.robot?.length ?? 0) > 0 && !o.site && !o.checkpoint);
      return { name, role: 'bridge', robots: o.robot! };
    default:
      need('takes no --site, --checkpoint or --robot', !o.site && !o.checkpoint && !o.robot);
      return { name, role: o.role } as Principal;
  }
}

export function describeBinding(u: Principal): string {
  switch (u.role) {
    case 'edge':
      return `${u.site}/${u.checkpoint}`;
    case 'robot':
      return `${u.robot.manufacturer}/${u.robot.serialNumber}`;
    case 'bridge':
      return u.robots.map((r) => `${r.manufacturer}/${r.serialNumber}`).join(',');
    default:
      return '';
  }
}

export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const out = (line: string) => io.stdout.write(`${line}\n`);
  const config = (file: string | undefined): Promise<BrokerConfig> => loadBrokerConfig(file, io.env);
  const withStore = async <T>(file: string | undefined, work: (store: ReturnType<typeof openUserStore>, c: BrokerConfig) => Promise<T> | T) => {
    const c = await config(file);
    mkdirSync(c.dataDir, { recursive: true });
    const store = openUserStore(join(c.dataDir, 'users.sqlite'), { mosquittoHashIterations: c.auth.mosquittoHashIterations, natsBcryptCost: c.auth.natsBcryptCost });
    try {
      return await work(store, c);
    } finally {
      store.close();
    }
  };
  const configOption = () => new Option('-c, --config <file>', 'config file (YAML or JSON)');
  const passwordFor = async (passwordStdin: boolean | undefined): Promise<{ password: string; generated: boolean }> =>
    passwordStdin ? { password: await readFirstLine(io.stdin), generated: false } : { password: generatePassword(), generated: true };

  const program = new Command('checkpoint-broker')
    .description('Secure MQTT broker for Checkpoint (aedes): auth, topic ACL, TLS, WebSocket, persistence')
    .version(checkpointVersion())
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  let exitCode = 0;

  program
    .command('run')
    .description('start the broker (stop with SIGINT/SIGTERM)')
    .addOption(configOption())
    .action(async (o: { config?: string }) => {
      const c = await config(o.config);
      const broker = await createBroker({ config: c });
      const { mqtt, mqtts, ws, metrics } = broker.ports;
      out(`checkpoint-broker: MQTT on ${c.host}:${mqtt}${mqtts ? `, TLS on ${mqtts}` : ''}${ws ? `, WebSocket on ${ws}` : ''}${metrics ? `, /metrics on ${c.metrics.host}:${metrics}` : ''}; data in ${c.dataDir}`);
      if (broker.users.list().length === 0) io.stderr.write('checkpoint-broker: no users yet; nobody can connect. Add one: checkpoint-broker user add NAME --role ROLE ...\n');
      const signal = await (io.shutdownSignal ?? waitForSignal());
      out(`checkpoint-broker: ${signal}, shutting down`);
      await broker.close();
    });

  const user = program.command('user').description('manage the users in the data dir');
  user
    .command('add <name>')
    .description('add a user; the password is read from stdin with --password-stdin, else generated and printed once')
    .addOption(new Option('--role <role>', 'role').choices(ROLES).makeOptionMandatory())
    .option('--site <site>', 'edge: site id')
    .option('--checkpoint <checkpoint>', 'edge: checkpoint id')
    .option('--robot <manufacturer/serial>', 'robot: its VDA 5050 address; bridge: repeat for each robot', parseRobot)
    .option('--password-stdin', 'read the password from the first line of stdin')
    .addOption(configOption())
    .action(async (name: string, o: UserAddOptions & { config?: string }) => {
      const principal = principalFrom(name, o);
      await withStore(o.config, async (store) => {
        const { password, generated } = await passwordFor(o.passwordStdin);
        await store.add(principal, password);
        out(`added ${name} (${principal.role}${describeBinding(principal) ? ` ${describeBinding(principal)}` : ''})`);
        if (generated) out(`password: ${password}\n(shown once; it is stored only as a hash)`);
      });
    });
  user
    .command('list')
    .description('list users (never passwords)')
    .option('--json', 'JSON output')
    .addOption(configOption())
    .action(async (o: { json?: boolean; config?: string }) => {
      await withStore(o.config, (store) => {
        const users = store.list();
        if (o.json) return out(JSON.stringify(users, null, 2));
        if (users.length === 0) return out('no users');
        const rows = users.map((u: UserRecord) => [u.name, u.role, describeBinding(u), u.updatedAt]);
        const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), ['NAME', 'ROLE', 'BINDING'][i]!.length));
        const fmt = (r: string[]) => r.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell)).join('  ').trimEnd();
        out(fmt(['NAME', 'ROLE', 'BINDING', 'UPDATED']));
        rows.forEach((r) => out(fmt(r)));
      });
    });
  user
    .command('remove <name>')
    .description('remove a user (connected clients stay connected until they reconnect)')
    .addOption(configOption())
    .action(async (name: string, o: { config?: string }) => {
      await withStore(o.config, (store) => {
        if (!store.remove(name)) throw new Error(`no user ${JSON.stringify(name)}`);
        out(`removed ${name}`);
      });
    });
  user
    .command('passwd <name>')
    .description('set a new password (from stdin with --password-stdin, else generated and printed once)')
    .option('--password-stdin', 'read the password from the first line of stdin')
    .addOption(configOption())
    .action(async (name: string, o: { passwordStdin?: boolean; config?: string }) => {
      await withStore(o.config, async (store) => {
        if (!store.get(name)) throw new Error(`no user ${JSON.stringify(name)}`);
        const { password, generated } = await passwordFor(o.passwordStdin);
        await store.setPassword(name, password);
        out(`password of ${name} changed`);
        if (generated) out(`password: ${password}\n(shown once; it is stored only as a hash)`);
      });
    });

  program
    .command('mosquitto-export')
    .description('write a Mosquitto password file, ACL file and config snippet from the user store')
    .requiredOption('--out <dir>', 'directory for passwd, acl and checkpoint-mosquitto.conf')
    .option('--bind-client-ids', 'use_username_as_clientid: sessions belong to their user (one connection per user)')
    .addOption(configOption())
    .action(async (o: { out: string; config?: string; bindClientIds?: boolean }) => {
      await withStore(o.config, (store, c) => {
        const result = exportMosquitto(store, o.out, { maxPacketBytes: c.limits.maxPacketBytes, bindClientIds: o.bindClientIds === true });
        out(`wrote ${result.passwordFile}, ${result.aclFile}, ${result.configFile} (${result.exported.length} users)`);
        if (result.withoutHash.length > 0) {
          io.stderr.write(`checkpoint-broker: not exported (no Mosquitto hash; run "user passwd" for them): ${result.withoutHash.join(', ')}\n`);
          exitCode = 1;
        }
      });
    });

  program
    .command('nats-export')
    .description('write a nats-server authorization block (users, bcrypt hashes, permissions) from the user store')
    .requiredOption('--out <file>', 'file to write, e.g. /etc/nats/checkpoint-auth.conf (include it from every node\'s config)')
    .addOption(configOption())
    .action(async (o: { out: string; config?: string }) => {
      await withStore(o.config, (store) => {
        const result = exportNats(store, o.out);
        out(`wrote ${result.file} (${result.exported.length} users)`);
        if (result.skipped.length > 0) {
          io.stderr.write(`checkpoint-broker: not exported: ${result.skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}\n`);
          exitCode = 1;
        }
      });
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 || error.code === 'commander.helpDisplayed' ? 0 : (error.exitCode || 2);
    io.stderr.write(`checkpoint-broker: ${(error as Error).message}\n`);
    return 1;
  }
}
