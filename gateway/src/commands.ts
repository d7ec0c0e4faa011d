/**
 * Commands to agents: publish a validated `cmd` on `.../cmd` (QoS 1) and wait for the agent's
 * final `cmd/ack` with the same id (progress acks of long commands are skipped).
 */
import { checkpointTopics, validatePayload, type Command, type CommandAck, type PayloadIssue } from '@checkpoint/protocol';
import { ulid } from 'ulid';

export type CommandResult =
  | { kind: 'ack'; command: Command; ack: CommandAck }
  | { kind: 'timeout'; command: Command }
  | { kind: 'invalid'; issues: PayloadIssue[]; message: string };

interface Pending {
  site: string;
  checkpoint: string;
  resolve(ack: CommandAck): void;
}

export class CommandDispatcher {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly publish: (topic: string, payload: string) => Promise<void>,
    private readonly timeoutMs: number,
  ) {}

  /** `body` is a command without (or with) `id`/`ts`; the gateway fills them in. */
  async send(site: string, checkpoint: string, body: Record<string, unknown>): Promise<CommandResult> {
    const candidate = { ...body, id: typeof body.id === 'string' ? body.id : ulid(), ts: new Date().toISOString() };
    const checked = validatePayload('cmd', candidate);
    if (!checked.ok) return { kind: 'invalid', issues: checked.errors, message: checked.message };
    const command = checked.value;
    if (this.pending.has(command.id)) {
      return { kind: 'invalid', issues: [{ path: '/id', message: 'a command with this id is already waiting for its ack' }], message: 'cmd: /id: duplicate' };
    }
    let timer: NodeJS.Timeout | undefined;
    const acked = new Promise<CommandAck | null>((resolve) => {
      this.pending.set(command.id, { site, checkpoint, resolve });
      timer = setTimeout(() => resolve(null), this.timeoutMs);
    });
    try {
      await this.publish(checkpointTopics.cmd({ site, checkpoint }), JSON.stringify(command));
      const ack = await acked;
      return ack ? { kind: 'ack', command, ack } : { kind: 'timeout', command };
    } finally {
      clearTimeout(timer);
      this.pending.delete(command.id);
    }
  }

  /** A `cmd/ack` arrived; true when somebody was waiting for it. */
  onAck(where: { site: string; checkpoint: string }, ack: CommandAck): boolean {
    const p = this.pending.get(ack.id);
    if (!p || p.site !== where.site || p.checkpoint !== where.checkpoint) return false;
    if (ack.progress !== undefined && ack.done !== true) return true;
    p.resolve(ack);
    return true;
  }

  cancelAll(): void {
    for (const p of this.pending.values()) p.resolve({ id: 'cancelled', ts: new Date().toISOString(), ok: false, error: 'gateway shutting down' });
    this.pending.clear();
  }
}
