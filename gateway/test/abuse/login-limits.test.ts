/**
 * Issue 14, the gateway's side of the login limits: one guard (from @checkpoint/broker) for the
 * API login, OPC UA sessions and the devices' model download (HTTP Basic).
 * - a successful login reset the address's failures, so interleaving valid logins allowed
 *   unlimited guesses at another account;
 * - the check and the recording of a failure were separated by the async password check, so
 *   200 concurrent wrong logins all got 401 (all checked);
 * - OPC UA logins and the model download had no limit at all.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MessageSecurityMode, OPCUAClient, SecurityPolicy, UserTokenType } from 'node-opcua-client';
import { makeTempDir, waitFor } from '@checkpoint/test-support';
import { createGateway, type Gateway } from '../../src/index.js';
import { API_PASSWORD, BROKER_PASSWORD, gatewayConfig, startTestBroker, type TestBroker } from '../helpers/world.js';

const MAX_FAILURES = 5;
let broker: TestBroker;
let gateway: Gateway;
/** One server certificate for every gateway here (creating it is what makes OPC UA slow to start). */
const pkiDir = makeTempDir('gw-abuse-pki');

const login = (username: string, password: string) =>
  fetch(`${gateway.url}/api/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) }).then((r) => r.status);

/** The API and OPC UA share the guard, and every test here logs in from 127.0.0.1: start each test with a clean slate. */
async function freshGateway(): Promise<void> {
  await gateway?.close();
  gateway = await createGateway(
    gatewayConfig({
      dataDir: makeTempDir('gw-abuse-logins'),
      mqttUrl: broker.url,
      auth: { loginMaxFailures: MAX_FAILURES, loginWindowS: 300 },
      opcua: { enabled: true, port: 0, pkiDir, securityModes: ['None', 'SignAndEncrypt'] },
      provisioning: { brokerUsersFile: join(broker.dir, 'users.sqlite') },
    }),
  );
  for (const role of ['guard', 'admin'] as const) await gateway.users.add({ name: role, role }, API_PASSWORD);
}

async function opcuaLogin(userName: string, password: string): Promise<'ok' | 'refused'> {
  const client = OPCUAClient.create({
    applicationName: 'checkpoint-abuse-test',
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    endpointMustExist: false,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
  });
  try {
    await client.connect(`opc.tcp://127.0.0.1:${gateway.opcua!.port}${gateway.config.opcua.resourcePath}`);
    const session = await client.createSession({ type: UserTokenType.UserName, userName, password }).catch(() => null);
    await session?.close();
    return session ? 'ok' : 'refused';
  } finally {
    await client.disconnect();
  }
}

const modelDownload = (username: string, password: string) =>
  fetch(`${gateway.url}/api/models/face-detector/1.0.0/file`, { headers: { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` } }).then((r) => r.status);

beforeAll(async () => {
  broker = await startTestBroker(['gate-1'], makeTempDir('gw-abuse-broker'), 'memory');
});

afterAll(async () => {
  await gateway?.close();
  await broker?.close();
});

describe('gateway login limits (one guard for API, OPC UA and model download)', () => {
  it('checks only loginMaxFailures of 200 concurrent wrong API logins; the rest get 429', { timeout: 60_000 }, async () => {
    await freshGateway();
    const statuses = await Promise.all(Array.from({ length: 200 }, () => login('admin', 'wrong-password')));
    expect(statuses.filter((s) => s === 401)).toHaveLength(MAX_FAILURES);
    expect(statuses.filter((s) => s === 429)).toHaveLength(200 - MAX_FAILURES);
  });

  it('does not let valid logins in between reset the count (no unlimited guesses at another account)', { timeout: 60_000 }, async () => {
    await freshGateway();
    const guesses: number[] = [];
    for (let i = 0; i < 15; i++) {
      guesses.push(await login('admin', `guess-${i}`));
      await login('guard', API_PASSWORD);
    }
    expect(guesses.filter((s) => s === 401)).toHaveLength(MAX_FAILURES);
    expect(guesses.slice(MAX_FAILURES).every((s) => s === 429)).toBe(true);
  });

  it('limits OPC UA logins with the same guard: after the failures even the right password is refused, and so is the API', { timeout: 90_000 }, async () => {
    await freshGateway();
    expect(await opcuaLogin('guard', API_PASSWORD)).toBe('ok');
    for (let i = 0; i < MAX_FAILURES; i++) expect(await opcuaLogin('guard', `guess-${i}`)).toBe('refused');
    expect(await opcuaLogin('guard', API_PASSWORD)).toBe('refused');
    expect(await login('guard', API_PASSWORD)).toBe(429);
  });

  it('limits the Basic-auth model download with the same guard', { timeout: 60_000 }, async () => {
    await freshGateway();
    await waitFor(() => gateway.mqttConnected(), { what: 'gateway connected' });
    const statuses: number[] = [];
    for (let i = 0; i < MAX_FAILURES + 3; i++) statuses.push(await modelDownload('edge-gate-1', `guess-${i}`));
    expect(statuses.slice(0, MAX_FAILURES)).toEqual(Array(MAX_FAILURES).fill(401));
    expect(statuses.slice(MAX_FAILURES)).toEqual([429, 429, 429]);
    // The right credentials are refused too while the address is limited (and would be 404/403, not 401, otherwise).
    expect(await modelDownload('edge-gate-1', BROKER_PASSWORD)).toBe(429);
    expect(await login('guard', API_PASSWORD)).toBe(429);
  });
});
