/**
 * `firmware-bridge`:
 *   run --config FILE          serial robots ↔ VDA 5050 on MQTT (see README)
 *   simulate-robot [options]   a simulated robot on a serial port (pty) or directly on MQTT;
 *                              faults are typed on stdin: estop [MANUAL|NONE], error TYPE [fatal],
 *                              clear, battery PCT, drop MS, garbage BYTES
 *   flash --port P --image F   STM32 firmware over the UART bootloader (AN3155), signed images
 *   sign / keygen              sign an image for `flash`, make an ed25519 key pair (FLASHING.md)
 */
import type { Readable, Writable } from 'node:stream';
import { createInterface } from 'node:readline';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { checkpointVersion, redactUrl } from '@checkpoint/protocol';
import { startBridge } from './bridge/bridge.js';
import { runFlashCli, runKeygenCli, runSignCli } from './flash/cli.js';
import { loadBridgeConfig } from './config.js';
import { createSimulatedRobot, type Fault, type SimulatedRobot } from './sim/robot.js';

export interface CliIo {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: Readonly<Record<string, string | undefined>>;
  shutdownSignal?: Promise<string>;
}

const defaultIo = (): CliIo => ({ stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env });

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

const number = (what: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${what} must be a number, got ${JSON.stringify(v)}`);
  return n;
};

/** A fault typed on stdin, or null with nothing to do; throws with usage on nonsense. */
export function parseFault(line: string): Fault | null {
  const [cmd, arg, arg2] = line.trim().split(/\s+/);
  switch (cmd) {
    case undefined:
    case '':
      return null;
    case 'estop':
      return { kind: 'estop', eStop: arg === 'NONE' || arg === 'off' ? 'NONE' : ((arg as 'MANUAL' | 'AUTOACK' | 'REMOTE' | undefined) ?? 'MANUAL') };
    case 'error':
      if (!arg) throw new Error('usage: error TYPE [fatal]');
      return { kind: 'error', errorType: arg, level: arg2 === 'fatal' ? 'FATAL' : 'WARNING' };
    case 'clear':
      return { kind: 'clear-errors' };
    case 'battery':
      return { kind: 'battery', pct: number('battery')(arg ?? '') };
    case 'drop':
      return { kind: 'link-drop', ms: number('drop')(arg ?? '3000') };
    case 'garbage':
      return { kind: 'garbage', bytes: number('garbage')(arg ?? '64') };
    default:
      throw new Error(`unknown fault ${JSON.stringify(cmd)}: estop [MANUAL|NONE], error TYPE [fatal], clear, battery PCT, drop MS, garbage BYTES`);
  }
}

export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
  const program = new Command('firmware-bridge').version(checkpointVersion()).exitOverride().configureOutput({
    writeOut: (s) => io.stdout.write(s),
    writeErr: (s) => io.stderr.write(s),
  });
  let exitCode = 0;

  program
    .command('run')
    .description('bridge serial robots to VDA 5050 on MQTT')
    .requiredOption('--config <file>', 'YAML or JSON config')
    .action(async (opts: { config: string }) => {
      const config = await loadBridgeConfig(opts.config, io.env);
      const logger = pino({ level: config.logLevel }, io.stderr as never);
      logger.info(`bridging ${config.robots.length} robot(s) to ${redactUrl(config.mqtt.url)}`);
      const bridge = await startBridge({ ...config, logger });
      const signal = await (io.shutdownSignal ?? waitForSignal());
      logger.info(`${signal}: publishing OFFLINE and stopping`);
      await bridge.close();
    });

  program
    .command('simulate-robot')
    .description('a simulated robot speaking the serial protocol (on a pty) or VDA 5050 on MQTT')
    .requiredOption('--serial-number <id>', 'VDA 5050 serialNumber')
    .option('--manufacturer <id>', 'VDA 5050 manufacturer', 'checkpoint')
    .option('--serial-port <path>', 'speak the MCU protocol on this serial port / pty')
    .option('--mqtt <url>', 'speak VDA 5050 directly (env CHECKPOINT_MQTT_URL)')
    .option('--start-node <id>', 'map node the robot stands on', 'P1')
    .option('--x <m>', 'start x', number('x'), 0)
    .option('--y <m>', 'start y', number('y'), 0)
    .option('--speed <m/s>', 'driving speed', number('speed'), 1)
    .option('--battery <pct>', 'initial charge', number('battery'), 100)
    .option('--time-scale <n>', 'simulated seconds per real second', number('time-scale'), 1)
    .action(async (opts: { serialNumber: string; manufacturer: string; serialPort?: string; mqtt?: string; startNode: string; x: number; y: number; speed: number; battery: number; timeScale: number }) => {
      const url = opts.mqtt ?? io.env.CHECKPOINT_MQTT_URL;
      if (!opts.serialPort === !url) throw new InvalidArgumentError('give exactly one of --serial-port or --mqtt (or CHECKPOINT_MQTT_URL)');
      const robot: SimulatedRobot = await createSimulatedRobot({
        manufacturer: opts.manufacturer,
        serialNumber: opts.serialNumber,
        startNode: opts.startNode,
        x: opts.x,
        y: opts.y,
        speed: opts.speed,
        batteryPct: opts.battery,
        timeScale: opts.timeScale,
        transport: opts.serialPort
          ? { kind: 'serial', path: opts.serialPort }
          : { kind: 'mqtt', url: url!, ...(io.env.CHECKPOINT_MQTT_USERNAME ? { username: io.env.CHECKPOINT_MQTT_USERNAME } : {}), ...(io.env.CHECKPOINT_MQTT_PASSWORD ? { password: io.env.CHECKPOINT_MQTT_PASSWORD } : {}) },
      });
      io.stdout.write(`simulated robot ${opts.manufacturer}/${opts.serialNumber} at ${opts.startNode} (${opts.serialPort ? `serial ${opts.serialPort}` : redactUrl(url!)}); faults on stdin\n`);
      const lines = createInterface({ input: io.stdin });
      lines.on('line', (line) => {
        try {
          const fault = parseFault(line);
          if (fault) robot.inject(fault);
        } catch (err) {
          io.stderr.write(`${(err as Error).message}\n`);
        }
      });
      await (io.shutdownSignal ?? waitForSignal());
      lines.close();
      await robot.close({ graceful: true });
    });

  // Flashing has its own argument parsing (src/flash/cli.ts); these pass the rest of the line on.
  const flashIo = {
    stdout: (line: string) => io.stdout.write(`${line}\n`),
    stderr: (line: string) => io.stderr.write(`${line}\n`),
    ...((io.stderr as NodeJS.WriteStream).isTTY ? { tty: io.stderr as NodeJS.WriteStream } : {}),
  };
  for (const [name, run, what] of [
    ['flash', runFlashCli, 'write a signed image to an STM32 through its UART bootloader (AN3155)'],
    ['sign', runSignCli, 'sign a firmware image (ed25519) for flash'],
    ['keygen', runKeygenCli, 'make an ed25519 key pair for signing firmware'],
  ] as const) {
    program
      .command(name)
      .description(`${what}; see FLASHING.md`)
      .allowUnknownOption()
      .helpOption(false)
      .argument('[args...]')
      .action(async (args: string[]) => {
        exitCode = await run(args, flashIo);
      });
  }

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    io.stderr.write(`firmware-bridge: ${(err as Error).message}\n`);
    exitCode = 1;
  }
  return exitCode;
}
