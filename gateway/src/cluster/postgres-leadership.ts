/**
 * Leadership through a PostgreSQL advisory lock: a session-level lock held on a dedicated
 * connection (not the pool's: a pooled connection is shared and recycled). The database frees the
 * lock when the holding session ends — the gateway's death or a lost connection — and a follower
 * trying every `retryMs` takes it. A leader checks every `checkMs` that its connection answers and
 * still holds the lock; the connection ending, failing or not answering within `checkTimeoutMs`
 * ends leadership at once (the state machine: leadership.ts).
 */
import pg from 'pg';
import { nextLeadership, type LeadershipAction, type LeadershipEvent, type LeadershipRole } from './leadership.js';

export interface Leadership {
  /** What the lock is for (all gateways that must run something once use the same name). */
  readonly name: string;
  role(): LeadershipRole;
  isLeader(): boolean;
  /** `listener(true)` when this gateway starts leading, `listener(false)` when it stops. Returns an unsubscribe function. */
  onChange(listener: (leading: boolean) => void): () => void;
  /** Ceases leading, closes the connection (freeing the lock). */
  stop(): Promise<void>;
}

export interface PostgresLeadershipOptions {
  /** The dedicated connection's settings (host, port, user, database, application_name…). */
  connection: pg.ClientConfig;
  name: string;
  /** Between a follower's lock attempts, and before reconnecting (default 1000 ms). */
  retryMs?: number;
  /** Between a leader's checks (default 1000 ms). */
  checkMs?: number;
  /** A check not answered in this time counts as a lost connection (default 3000 ms). */
  checkTimeoutMs?: number;
  /** Connection problems, for the operator (never credentials: only the error message). */
  log?: (message: string) => void;
}

const TRY_LOCK = 'SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS acquired';
// One advisory lock per dedicated connection: "does this session hold an advisory lock".
const HOLDS_LOCK = `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted) AS held`;

export function startPostgresLeadership(options: PostgresLeadershipOptions): Leadership {
  const retryMs = options.retryMs ?? 1000;
  const checkMs = options.checkMs ?? 1000;
  const checkTimeoutMs = options.checkTimeoutMs ?? 3000;
  const log = options.log ?? (() => undefined);
  const listeners = new Set<(leading: boolean) => void>();
  const timers = new Set<NodeJS.Timeout>();
  let role: LeadershipRole = 'connecting';
  let client: pg.Client | null = null;
  // Every connection gets a generation: what a replaced connection reports is dropped.
  let generation = 0;
  let tried = false;
  let closing: Promise<void> = Promise.resolve();

  function dispatch(event: LeadershipEvent, gen: number): void {
    if (gen !== generation) return;
    const step = nextLeadership(role, event);
    role = step.role;
    for (const action of step.actions) perform(action);
  }

  function later(ms: number, run: () => void): void {
    const timer = setTimeout(() => {
      timers.delete(timer);
      run();
    }, ms);
    timers.add(timer);
  }

  function dropClient(): Promise<void> {
    const old = client;
    client = null;
    return old ? old.end().catch(() => undefined) : Promise.resolve();
  }

  function connect(gen: number): void {
    const c = new pg.Client({ ...options.connection, keepAlive: true });
    client = c;
    tried = false;
    const lost = (why: string) => {
      if (gen === generation) log(`leadership ${options.name}: connection lost (${why})`);
      dispatch({ type: 'connection-lost' }, gen);
    };
    c.on('error', (error) => lost(error.message));
    c.on('end', () => lost('ended'));
    c.connect().then(
      () => dispatch({ type: 'connected' }, gen),
      (error: Error) => lost(error.message),
    );
  }

  function tryLock(gen: number): void {
    const c = client;
    if (gen !== generation || !c) return;
    c.query<{ acquired: boolean }>(TRY_LOCK, [options.name]).then(
      ({ rows }) => dispatch({ type: 'lock-answer', acquired: rows[0]?.acquired === true }, gen),
      () => dispatch({ type: 'connection-lost' }, gen),
    );
  }

  function check(gen: number): void {
    const c = client;
    if (gen !== generation || !c) return;
    let answered = false;
    later(checkTimeoutMs, () => {
      if (answered || gen !== generation) return;
      log(`leadership ${options.name}: check not answered in ${checkTimeoutMs} ms`);
      dispatch({ type: 'connection-lost' }, gen);
    });
    c.query<{ held: boolean }>(HOLDS_LOCK).then(
      ({ rows }) => {
        answered = true;
        dispatch({ type: 'check-answer', held: rows[0]?.held === true }, gen);
      },
      () => {
        answered = true;
        dispatch({ type: 'connection-lost' }, gen);
      },
    );
  }

  function notify(leading: boolean): void {
    for (const listener of listeners) listener(leading);
  }

  function perform(action: LeadershipAction): void {
    const gen = generation;
    switch (action) {
      case 'lead':
        notify(true);
        return;
      case 'cease':
        notify(false);
        return;
      case 'try-lock':
        // The first attempt on a connection at once, the next ones after the retry interval.
        if (!tried) {
          tried = true;
          tryLock(gen);
        } else later(retryMs, () => tryLock(gen));
        return;
      case 'check':
        later(checkMs, () => check(gen));
        return;
      case 'reconnect': {
        const next = ++generation;
        void dropClient();
        later(retryMs, () => {
          if (next === generation) connect(next);
        });
        return;
      }
      case 'disconnect':
        generation++;
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        closing = dropClient();
        return;
    }
  }

  connect(generation);

  return {
    name: options.name,
    role: () => role,
    isLeader: () => role === 'leader',
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async stop() {
      dispatch({ type: 'stop' }, generation);
      await closing;
    },
  };
}
