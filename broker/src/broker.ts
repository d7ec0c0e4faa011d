/**
 * The broker: aedes with our authentication, ACL, limits and persistence, behind TCP, TLS and
 * WebSocket listeners, plus /metrics and $SYS stats. Embeddable: `createBroker()` returns once
 * every listener is up (port 0 = any free port) and `close()` undoes all of it.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { OrderedLevelPersistence } from './ordered-persistence.js';
import { trackPublishes } from './publish-drain.js';
import { acknowledgeWhenStored, type DurableAcks } from './durable-acks.js';
import { Level } from 'level';
import { pino, type Logger } from 'pino';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { parseConfig } from '@checkpoint/protocol';
import { canPublish, canRetain, canSubscribe, grantsFor, isRetainable, mayUseClientId, topicMatchesFilter, type Grants, type Principal } from './acl.js';
import { BrokerConfigSchema, type BrokerConfig } from './config.js';
import { createBrokerMetrics, sysTopics, type BrokerMetrics } from './metrics.js';
import { createPacketSizeGuard } from './packet-guard.js';
import { createLoginGuard, type LoginGuard } from './login-guard.js';
import { watchRevocations } from './revocation.js';
import { fanOutWithoutWaiting, limitBufferedBytes } from './slow-subscriber.js';
import { openUserStore, type UserStore } from './user-store.js';

/** Stands in for aedes's per-client counter record: nothing is ever taken for a duplicate. */
const NO_DUPLICATE_CHECK = new Proxy(Object.create(null) as object, { get: () => 0, set: () => true, deleteProperty: () => true });

/** A connected client's identity, its grants (fixed for the connection: a changed user is disconnected), and the ACL answers so far. */
interface Session {
  principal: Principal;
  grants: Grants;
  /** topic -> may publish / may receive: a device uses a handful of topics, each checked once instead of per message. */
  mayPublish: Map<string, boolean>;
  mayRead: Map<string, boolean>;
}

/** Topics remembered per client and direction; a client cycling through more starts over (the answers are only a cache). */
const MAX_REMEMBERED_TOPICS = 1024;

function decide(answers: Map<string, boolean>, topic: string, check: () => boolean): boolean {
  let answer = answers.get(topic);
  if (answer === undefined) {
    answer = check();
    if (answers.size >= MAX_REMEMBERED_TOPICS) answers.clear();
    answers.set(topic, answer);
  }
  return answer;
}

export interface BrokerOptions {
  /** Config as in the config file (validated, defaults filled in); e.g. `{ dataDir, mqtt: { port: 0 } }`. */
  config?: unknown;
  /** The user store; default: `<dataDir>/users.sqlite` (closed by close()). */
  users?: UserStore;
  logger?: Logger;
  /** Clock for the login guard (tests). */
  now?: () => number;
  /** The login guard (rate limits and password checks); default: one made from `auth.*`. */
  loginGuard?: LoginGuard;
  /** The SQLite file behind `users` (when handed in), watched so that revocations are noticed cheaply. */
  usersFile?: string;
  /** How often connected clients are checked against the user store (revocation.ts); default 500 ms. */
  revocationCheckMs?: number;
}

export interface Broker {
  aedes: Aedes;
  /** Bound ports (useful with port 0). */
  ports: { mqtt: number; mqtts?: number; ws?: number; metrics?: number };
  metrics: BrokerMetrics;
  users: UserStore;
  config: BrokerConfig;
  /** Disconnects clients, closes listeners, flushes persistence. Idempotent. */
  close(): Promise<void>;
}

/** How long a stop waits for acknowledged publishes to be stored (they take milliseconds). */
const STORE_DRAIN_TIMEOUT_MS = 5000;

/** aedes' CONNACK return codes (MQTT 3.1.1 §3.2.2.3). */
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;
const IDENTIFIER_REJECTED = 2;

class ClientGone extends Error {
  constructor() {
    super('client left before its password check');
  }
}

function authError(returnCode: number, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function remoteAddress(client: Client): string {
  const conn = client.conn as Duplex & { remoteAddress?: string };
  return conn.remoteAddress ?? client.req?.socket?.remoteAddress ?? 'unknown';
}

function readConfigFile(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new Error(`cannot read ${key} ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

function listen(server: NetServer | HttpServer, port: number, host: string, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      const why = error.code === 'EADDRINUSE' ? 'address already in use' : error.code === 'EACCES' ? 'permission denied' : error.message;
      reject(new Error(`cannot listen for ${what} on ${host}:${port}: ${why}`, { cause: error }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: NetServer | HttpServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
    (server as HttpServer).closeAllConnections?.();
  });
}

/** Deletes retained messages whose topic may not hold one (isRetainable); returns how many. */
async function purgeUnretainable(persistence: OrderedLevelPersistence): Promise<number> {
  const unretainable: string[] = [];
  for await (const packet of persistence.createRetainedStream('#')) {
    if (!isRetainable(packet.topic)) unretainable.push(packet.topic);
  }
  for (const topic of unretainable) {
    await persistence.storeRetained({ cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 0, retain: true, dup: false });
  }
  return unretainable.length;
}

export async function createBroker(options: BrokerOptions = {}): Promise<Broker> {
  const config = parseConfig(BrokerConfigSchema, options.config ?? {}, 'broker config');
  const log = options.logger ?? pino({ name: 'checkpoint-broker', level: config.logLevel });
  const { limits } = config;
  const cleanups: Array<() => Promise<void> | void> = []; // undone in reverse on close or failed start
  const undo = async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        log.warn({ err: error }, 'error while shutting down');
      }
    }
  };

  try {
    // Files first, so that a bad cert or data dir fails before anything listens.
    const tlsFiles = config.tls && {
      cert: readConfigFile('tls.certFile', config.tls.certFile),
      key: readConfigFile('tls.keyFile', config.tls.keyFile),
      ca: config.tls.caFile ? readConfigFile('tls.caFile', config.tls.caFile) : undefined,
    };
    if (config.tls?.requireClientCert && !config.tls.caFile) {
      throw new Error('invalid broker config: tls.requireClientCert needs tls.caFile (the CA that signs client certificates)');
    }
    if (!options.users || config.persistence === 'level') {
      try {
        mkdirSync(config.dataDir, { recursive: true });
      } catch (error) {
        throw new Error(`cannot create data dir ${config.dataDir}: ${(error as NodeJS.ErrnoException).code}`, { cause: error });
      }
    }
    const users = options.users ?? openUserStore(join(config.dataDir, 'users.sqlite'), { mosquittoHashIterations: config.auth.mosquittoHashIterations });
    if (!options.users) cleanups.push(() => users.close());

    let persistence: OrderedLevelPersistence | undefined;
    if (config.persistence === 'level') {
      const dir = join(config.dataDir, 'mqtt-persistence');
      const db = new Level(dir);
      try {
        await db.open();
      } catch (error) {
        const cause = (error as Error).cause as NodeJS.ErrnoException | undefined;
        throw new Error(`cannot open persistence ${dir} (is another broker using this data dir?): ${cause?.message ?? (error as Error).message}`, { cause: error });
      }
      persistence = new OrderedLevelPersistence(
        db,
        (error) => log.error({ err: error }, 'cannot write queued messages to persistence (publishers get no PUBACK for them)'),
        config.persistenceCommit,
      );
      cleanups.push(() => persistence!.destroy());
    }

    const metrics = createBrokerMetrics({ processMetrics: options.config !== undefined && config.metrics.port !== null });
    const guard =
      options.loginGuard ??
      createLoginGuard({
        maxFailures: config.auth.maxFailures,
        windowMs: config.auth.failureWindowS * 1000,
        maxConcurrentChecks: config.auth.maxConcurrentChecks,
        maxWaiting: config.auth.maxWaitingLogins,
        now: options.now,
      });
    const sessions = new WeakMap<Client, Session>();
    /** Counted and logged once per client (its pending writes all fail with the same error). */
    const cutOff = new WeakSet<Client>();
    const slowSubscriber = (client: Client, reason: string) => {
      if (cutOff.has(client)) return;
      cutOff.add(client);
      metrics.slowSubscribers.inc();
      log.warn({ clientId: client.id, user: sessions.get(client)?.principal.name, reason }, 'slow subscriber disconnected');
    };
    const wills = new WeakMap<Client, { topic: string; retain: boolean } | undefined>();
    /** Clients that sent an empty client id: aedes gave them a random one, which nobody needs to claim. */
    const assignedIds = new WeakSet<Client>();
    // A removed, re-bound or re-keyed user is disconnected at once, even when another process (the gateway) changed the store.
    const revocations = watchRevocations<Client>({
      users,
      file: options.users ? (options.usersFile ?? null) : join(config.dataDir, 'users.sqlite'),
      ...(options.revocationCheckMs ? { intervalMs: options.revocationCheckMs } : {}),
      revoke(client, admission, reason) {
        log.warn({ user: admission.principal.name, clientId: client.id, reason }, 'credentials revoked: client disconnected');
        client.close();
      },
      isGone: (client) => client.closed,
      onError: (error) => log.warn({ err: error.message }, 'revocation check failed'),
    });
    cleanups.push(() => revocations.close());
    // Log each denied (user, operation, topic) once per process lifetime, up to a cap: a looping
    // misconfigured client must not flood the log. The counters count every one.
    const logged = new Set<string>();
    const logOnce = (key: string, fields: object, message: string) => {
      if (logged.has(key) || logged.size >= 1000) return;
      logged.add(key);
      log.warn(fields, message);
    };

    /** Set once aedes exists; a QoS 1 publish is stored before its PUBACK (durable-acks.ts). */
    const acks: { whenStored?: DurableAcks } = {};
    const aedes = await Aedes.createBroker({
      persistence,
      concurrency: limits.concurrency,
      connectTimeout: limits.connectTimeoutMs,
      drainTimeout: limits.drainTimeoutMs,
      maxTopicLevels: limits.maxTopicLevels,
      maxClientsIdLength: limits.maxClientIdLength,
      preConnect(client, packet, done) {
        wills.set(client, packet.will ? { topic: packet.will.topic, retain: packet.will.retain === true } : undefined);
        if (!packet.clientId) assignedIds.add(client);
        limitBufferedBytes(client, limits.maxBufferedBytesPerClient, (slow, reason) => slowSubscriber(slow, reason));
        // aedes drops a message whose broker counter is below the last one a client received
        // (meant for overlapping subscriptions). Retained stores, offline enqueues and QoS 0 vs
        // QoS 1 paths finish in different orders, so that check also dropped real messages from a
        // connected persistent subscriber (a retained state just before a screening, say). MQTT
        // 3.1.1 allows one copy per overlapping subscription, and our receivers are idempotent.
        (client as unknown as { duplicates: object }).duplicates = NO_DUPLICATE_CHECK;
        done(null, true);
      },
      authenticate(client, username, password, done) {
        const address = remoteAddress(client);
        const refuse = (code: number, reason: string) => {
          metrics.denied.inc({ operation: 'connect' });
          log.warn({ address, user: username && /^[\w.-]{1,64}$/.test(username) ? username : '(invalid name)', clientId: client.id, reason }, 'connection refused');
          done(authError(code, reason), false);
        };
        if (aedes.connectedClients >= limits.maxConnections) return refuse(SERVER_UNAVAILABLE, 'too many connections');
        if (guard.retryAfterMs(address) > 0) return refuse(NOT_AUTHORIZED, 'too many failed logins from this address');
        if (!username || !password) {
          guard.recordFailure(address);
          return refuse(NOT_AUTHORIZED, 'anonymous clients are not allowed');
        }
        // A client that left while waiting for its turn costs no password check.
        const check = () => (client.closed ? Promise.reject(new ClientGone()) : users.verify(username, password.toString('utf8')));
        guard.attempt(address, check).then(
          (verdict) => {
            if (!verdict.ok) {
              if (verdict.reason === 'limited') return refuse(NOT_AUTHORIZED, 'too many failed logins from this address');
              if (verdict.reason === 'busy') return refuse(SERVER_UNAVAILABLE, 'too many logins waiting for a password check');
              return refuse(BAD_USERNAME_OR_PASSWORD, 'bad user name or password');
            }
            const principal = verdict.value;
            const grants = grantsFor(principal);
            const will = wills.get(client);
            if (will && !canPublish(principal, will.topic, grants)) return refuse(NOT_AUTHORIZED, `last will topic ${will.topic} not allowed`);
            if (will?.retain && !canRetain(principal, will.topic, grants)) return refuse(NOT_AUTHORIZED, `retained last will on ${will.topic} not allowed`);
            // A client id (and the persistent session under it) belongs to one user: the one
            // connected with it now, else the one that claimed it first (kept in the user store,
            // so it holds while that user is away, across broker restarts).
            const holder = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients[client.id];
            const holderName = holder && sessions.get(holder)?.principal.name;
            if (holderName && holderName !== principal.name) return refuse(IDENTIFIER_REJECTED, `client id ${client.id} is in use by another user`);
            if (!mayUseClientId(principal, client.id)) return refuse(IDENTIFIER_REJECTED, `client id ${client.id} is reserved for the gateway`);
            if (!assignedIds.has(client)) {
              const claim = users.claimClientId(principal.name, client.id);
              if (!claim.ok) return refuse(IDENTIFIER_REJECTED, `client id ${client.id} belongs to another user`);
            }
            sessions.set(client, { principal, grants, mayPublish: new Map(), mayRead: new Map() });
            revocations.admitted(client, principal);
            done(null, true);
          },
        ).catch((error: Error) => {
          if (error instanceof ClientGone) return done(authError(SERVER_UNAVAILABLE, error.message), false);
          log.error({ err: error }, 'user store failed');
          done(authError(SERVER_UNAVAILABLE, 'user store unavailable'), false);
        });
      },
      authorizePublish(client, packet, done) {
        if (!client) {
          // A will of a client gone before a restart; its topic was checked at CONNECT.
          return done(packet.topic.startsWith('$') ? new Error('$ topics are reserved') : null);
        }
        const session = sessions.get(client);
        const allowed = session !== undefined && decide(session.mayPublish, packet.topic, () => canPublish(session.principal, packet.topic, session.grants));
        if (allowed && (!packet.retain || canRetain(session.principal, packet.topic, session.grants))) {
          metrics.messagesReceived.inc();
          if (packet.qos === 1 && acks.whenStored) return acks.whenStored.publishBeforeAck(client, packet, done);
          return done(null);
        }
        if (allowed) {
          // Retained only where the contract says so (RETAINABLE_FILTERS): never face images.
          metrics.denied.inc({ operation: 'retain' });
          logOnce(`r ${session.principal.name} ${packet.topic}`, { user: session.principal.name, topic: packet.topic }, 'retained publish refused: only state, connection and factsheet may be retained');
        } else {
          metrics.denied.inc({ operation: 'publish' });
          logOnce(`p ${session?.principal.name} ${packet.topic}`, { user: session?.principal.name, topic: packet.topic }, 'publish denied');
        }
        // MQTT 3.1.1 has no negative PUBACK: like Mosquitto, acknowledge and discard. aedes would
        // close the connection on an error here (and the client would resend forever), so the
        // packet is rerouted, emptied, to a topic no grant can read.
        packet.topic = `$SYS/${aedes.id}/denied`;
        packet.payload = Buffer.alloc(0);
        packet.retain = false;
        done(null);
      },
      authorizeSubscribe(client, subscription, done) {
        const session = sessions.get(client);
        if (session && canSubscribe(session.principal, subscription.topic, session.grants)) return done(null, subscription);
        metrics.denied.inc({ operation: 'subscribe' });
        logOnce(`s ${session?.principal.name} ${subscription.topic}`, { user: session?.principal.name, filter: subscription.topic }, 'subscribe denied');
        done(null, null); // SUBACK 0x80 for this filter; the connection stays
      },
      authorizeForward(client, packet) {
        // Subscriptions were checked, but a session taken over or queued before a grant changed
        // could still hold messages: every delivery is checked against the read grants.
        const session = sessions.get(client);
        if (!session || !decide(session.mayRead, packet.topic, () => session.grants.subscribe.some((f) => topicMatchesFilter(packet.topic, f)))) return null;
        metrics.messagesSent.inc();
        return packet;
      },
    });
    if (persistence) {
      const purged = await purgeUnretainable(persistence);
      if (purged > 0) log.warn({ purged }, 'removed retained messages on topics that may not be retained (left by an older version)');
    }
    // Undone in reverse: the MQTT listeners stop accepting (without waiting: a net server's close
    // waits for its connections, which only aedes.close ends), aedes closes the clients, publishes
    // under way finish storing (publish-drain.ts), the listeners finish closing, and only then
    // does the persistence close.
    const listenersClosed: Array<Promise<void>> = [];
    const stopListening = (server: NetServer | HttpServer) => () => void listenersClosed.push(closeServer(server));
    cleanups.push(async () => void (await Promise.all(listenersClosed)));
    const publishes = trackPublishes(aedes);
    const stored = persistence;
    acks.whenStored = acknowledgeWhenStored(aedes, stored ? () => stored.durable() : () => Promise.resolve());
    cleanups.push(() => publishes.drained(STORE_DRAIN_TIMEOUT_MS));
    cleanups.push(() => new Promise<void>((resolve) => aedes.close(() => resolve())));
    aedes.on('client', () => metrics.clientsConnected.inc());
    aedes.on('clientDisconnect', (client) => {
      metrics.clientsConnected.dec();
      revocations.forget(client);
    });
    // A publish no longer waits for subscribers' sockets (slow-subscriber.ts).
    fanOutWithoutWaiting(aedes);
    aedes.on('clientError', (client, error) => {
      if (error.message === 'drain timeout') {
        slowSubscriber(client, `socket not drained for ${limits.drainTimeoutMs} ms`);
      } else {
        log.debug({ clientId: client.id, err: error.message }, 'client error');
      }
    });
    aedes.on('connectionError', (client, error) => log.debug({ address: remoteAddress(client), err: error.message }, 'connection error'));

    /** Every connection, whatever its transport: size guard and byte counters around aedes. */
    const attach = (conn: Duplex, req?: IncomingMessage) => {
      const guard = createPacketSizeGuard(limits.maxPacketBytes);
      const originalWrite = conn.write.bind(conn) as (...args: unknown[]) => boolean;
      conn.write = ((chunk: unknown, ...rest: unknown[]) => {
        metrics.bytesSent.inc(typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Uint8Array).length);
        return originalWrite(chunk, ...rest);
      }) as typeof conn.write;
      aedes.handle(conn, req);
      // Added after aedes' 'readable' listener, so 'data' only mirrors what aedes reads.
      conn.on('data', (chunk: Buffer) => {
        metrics.bytesReceived.inc(chunk.length);
        const verdict = guard.push(chunk);
        if (!verdict.ok && !conn.destroyed) {
          metrics.rejectedPackets.inc({ reason: verdict.reason.startsWith('malformed') ? 'malformed' : 'too_large' });
          log.warn({ address: (conn as { remoteAddress?: string }).remoteAddress ?? req?.socket.remoteAddress, reason: verdict.reason }, 'connection closed');
          conn.destroy();
        }
      });
    };

    const ports: Broker['ports'] = { mqtt: 0 };
    // No Nagle: a PUBACK or a delivery is one small write that must not wait for the previous one's ACK.
    const tcp = createNetServer({ noDelay: true }, (socket) => attach(socket));
    cleanups.push(stopListening(tcp));
    ports.mqtt = await listen(tcp, config.mqtt.port, config.host, 'MQTT');

    if (config.tls && tlsFiles) {
      let tls: TlsServer;
      try {
        tls = createTlsServer({
          cert: tlsFiles.cert,
          key: tlsFiles.key,
          ca: tlsFiles.ca,
          requestCert: tlsFiles.ca !== undefined,
          rejectUnauthorized: config.tls.requireClientCert,
        });
      } catch (error) {
        throw new Error(`invalid TLS certificate or key (tls.certFile ${config.tls.certFile}, tls.keyFile ${config.tls.keyFile}): ${(error as Error).message}`, { cause: error });
      }
      tls.on('secureConnection', (socket) => attach(socket));
      tls.on('tlsClientError', (error) => log.debug({ err: error.message }, 'TLS handshake failed'));
      cleanups.push(stopListening(tls));
      ports.mqtts = await listen(tls, config.tls.port, config.host, 'MQTT over TLS');
    }

    if (config.websocket) {
      const http = createHttpServer((_req, res) => res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only\n'));
      // One WebSocket message carries one MQTT packet from mqtt.js; allow a little framing slack.
      const wss = new WebSocketServer({ server: http, maxPayload: limits.maxPacketBytes + 16 });
      wss.on('connection', (ws, req) => attach(createWebSocketStream(ws), req));
      wss.on('error', (error) => log.warn({ err: error.message }, 'WebSocket server error'));
      cleanups.push(async () => {
        for (const ws of wss.clients) ws.terminate();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        await closeServer(http);
      });
      ports.ws = await listen(http, config.websocket.port, config.host, 'MQTT over WebSocket');
    }

    if (config.metrics.port !== null) {
      const http = createHttpServer((req, res) => {
        if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
          metrics.registry.metrics().then(
            (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
            (error: Error) => res.writeHead(500).end(error.message),
          );
        } else {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; try /metrics\n');
        }
      });
      cleanups.push(() => closeServer(http));
      ports.metrics = await listen(http, config.metrics.port, config.metrics.host, 'metrics HTTP');
    }

    if (config.sysIntervalS > 0) {
      const publishStats = async () => {
        for (const [topic, value] of sysTopics(await metrics.snapshot(), (aedes as unknown as { version: string }).version)) {
          aedes.publish({ cmd: 'publish', topic, payload: Buffer.from(value), qos: 0, retain: true, dup: false }, () => {});
        }
      };
      const timer = setInterval(() => void publishStats().catch((error) => log.warn({ err: error }, '$SYS stats failed')), config.sysIntervalS * 1000);
      timer.unref();
      cleanups.push(() => clearInterval(timer));
    }

    log.info({ ports, persistence: config.persistence, dataDir: config.dataDir }, 'broker listening');
    let closing: Promise<void> | undefined;
    return {
      aedes,
      ports,
      metrics,
      users,
      config,
      close: () => (closing ??= undo()),
    };
  } catch (error) {
    await undo();
    throw error;
  }
}
