/**
 * Process plumbing shared by the programs' command lines (checkpoint-broker, checkpoint-gateway):
 * injectable standard streams, stop on SIGINT/SIGTERM, a password from the first line of stdin.
 */
import type { Readable, Writable } from 'node:stream';

export interface CliIo {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: Readonly<Record<string, string | undefined>>;
  /** Resolves when the program should stop (default: SIGINT or SIGTERM). */
  shutdownSignal?: Promise<string>;
}

export function defaultIo(): CliIo {
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env };
}

export function waitForSignal(): Promise<string> {
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

/** First line of stdin, for passwords given by a script (`echo "$PW" | checkpoint-broker user add ...`). */
export async function readFirstLine(stdin: Readable): Promise<string> {
  let text = '';
  for await (const chunk of stdin) {
    text += chunk.toString();
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/)[0] ?? '';
}
