/**
 * `edge-agent enroll` on its own: URL rules, what it refuses before sending the token, and the
 * config it writes. The exchange with a real gateway (HTTPS, token reuse and expiry, the agent
 * starting from the written file, revocation) is tested in gateway/test/provisioning.test.ts.
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { checkGatewayUrl, enrolledConfigText, runEnroll, type EnrollResponse } from '../src/enroll.js';
import { loadAgentConfig } from '../src/config/load.js';

const enrolled: EnrollResponse = {
  site: 'hq',
  checkpoint: 'gate-4',
  mqtt: { url: 'mqtts://broker.hq:8883', username: 'hq.gate-4', password: 'generated-password-123456' },
  caCert: null,
  config: { site: 'hq', checkpoint: 'gate-4', mqtt: { url: 'mqtts://broker.hq:8883', username: 'hq.gate-4', password: 'generated-password-123456' } },
};

function io() {
  const lines = { out: [] as string[], err: [] as string[] };
  return { lines, io: { stdout: (l: string) => lines.out.push(l), stderr: (l: string) => lines.err.push(l), env: {} } };
}

describe('edge-agent enroll', () => {
  it('wants https, except for a gateway on this machine', () => {
    expect(checkGatewayUrl('https://gw.hq.example:8443').host).toBe('gw.hq.example:8443');
    expect(checkGatewayUrl('http://127.0.0.1:8080').port).toBe('8080');
    expect(checkGatewayUrl('http://localhost:8080').hostname).toBe('localhost');
    expect(() => checkGatewayUrl('http://gw.hq.example:8080')).toThrow(/use https:\/\/ — the answer carries this device's broker password/);
    expect(() => checkGatewayUrl('ftp://gw')).toThrow(/expected an https:\/\/ URL/);
    expect(() => checkGatewayUrl('gw.hq')).toThrow(/--gateway: not a URL/);
  });

  it('writes a config the agent accepts; with --force it replaces only the credentials in an existing one', async () => {
    const fresh = enrolledConfigText(null, enrolled, { dataDir: '/var/lib/checkpoint-agent', caFile: '/var/lib/checkpoint-agent/broker-ca.pem' });
    expect(fresh).toMatch(/^# edge-agent config written by `edge-agent enroll` for hq\/gate-4/);
    expect(parse(fresh)).toEqual({
      site: 'hq',
      checkpoint: 'gate-4',
      dataDir: '/var/lib/checkpoint-agent',
      mqtt: { url: 'mqtts://broker.hq:8883', username: 'hq.gate-4', password: 'generated-password-123456', caFile: '/var/lib/checkpoint-agent/broker-ca.pem' },
    });

    const existing = '# gate 4, north entrance\nsite: hq\ncheckpoint: gate-9\nmqtt:\n  url: mqtt://old:1883\n  username: old\n  password: old-password\n  caFile: /old/ca.pem\n  keepaliveS: 15 # slow link\nsource:\n  thermal:\n    kind: sim\n';
    const updated = enrolledConfigText(existing, enrolled, { dataDir: '/data/agent', caFile: null });
    expect(updated).toContain('# gate 4, north entrance');
    expect(updated).toContain('keepaliveS: 15 # slow link');
    const dir = await mkdtemp(path.join(tmpdir(), 'enroll-'));
    writeFileSync(path.join(dir, 'agent.yaml'), updated);
    const config = await loadAgentConfig(path.join(dir, 'agent.yaml'), {});
    expect(config).toMatchObject({ site: 'hq', checkpoint: 'gate-4', dataDir: '/data/agent', source: { thermal: { kind: 'sim' } } });
    expect(config.mqtt).toMatchObject({ url: 'mqtts://broker.hq:8883', username: 'hq.gate-4', password: 'generated-password-123456', keepaliveS: 15 });
    expect(config.mqtt.caFile).toBeUndefined();
  });

  it('refuses before sending the token: existing config without --force, unreadable CA; says when the gateway is unreachable', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'enroll-'));
    writeFileSync(path.join(dir, 'agent.yaml'), 'site: hq\ncheckpoint: gate-1\n');
    const a = io();
    expect(await runEnroll({ gateway: 'http://127.0.0.1:9', token: 'cpe_x', dataDir: dir }, a.io)).toBe(2);
    expect(a.lines.err[0]).toMatch(/agent\.yaml exists; the token was not used\. Pass --force/);

    const b = io();
    expect(await runEnroll({ gateway: 'https://127.0.0.1:9', token: 'cpe_x', dataDir: path.join(dir, 'other'), caFile: path.join(dir, 'nope.pem') }, b.io)).toBe(2);
    expect(b.lines.err[0]).toMatch(/--ca: cannot read .*nope\.pem: ENOENT/);

    // A port nobody listens on.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const c = io();
    expect(await runEnroll({ gateway: `http://127.0.0.1:${port}`, token: 'cpe_x', dataDir: path.join(dir, 'third') }, c.io)).toBe(1);
    expect(c.lines.err[0]).toMatch(/cannot reach the gateway at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED; the token was not used/);
  });
});
