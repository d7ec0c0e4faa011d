import { describe, expect, it } from 'vitest';
import { assertPayload, MAX_JSON_PAYLOAD_BYTES, parsePayload, PayloadError, validatePayload } from '@checkpoint/protocol';
import { validScreening } from './fixtures.js';

describe('screening payload', () => {
  it('round-trips through JSON', () => {
    const screening = validScreening();
    const result = parsePayload('screening', Buffer.from(JSON.stringify(screening)));
    expect(result).toEqual({ ok: true, value: screening });
  });

  it('accepts a null temperature for invalid decisions', () => {
    const s = validScreening({ temperatureC: null, method: null, decision: 'invalid', reasons: ['no_reference'], blackbody: null });
    expect(validatePayload('screening', s).ok).toBe(true);
  });

  it('accepts cannot_screen with its reason and a thermal-only detection (both optional additions)', () => {
    const s = validScreening({ temperatureC: null, method: null, decision: 'cannot_screen', reasons: ['face_too_small'], blackbody: null, detectedBy: 'thermal', mask: 'unknown', maskScore: null });
    expect(validatePayload('screening', s)).toEqual({ ok: true, value: s });
    const old = validScreening();
    expect('detectedBy' in old).toBe(false);
    expect(validatePayload('screening', old).ok).toBe(true);
  });

  const cases: Array<[string, (s: Record<string, unknown>) => void, RegExp]> = [
    ['unknown detector', (s) => (s.detectedBy = 'radar'), /\/detectedBy/],
    ['wrong type', (s) => (s.temperatureC = '37.6'), /\/temperatureC/],
    ['missing field', (s) => delete s.decision, /\/decision: required field is missing/],
    ['extra field', (s) => (s.patientName = 'x'), /\/patientName: unexpected field/],
    ['bad site id', (s) => (s.site = 'Hospital A'), /\/site/],
    ['bad ULID', (s) => (s.id = '123'), /\/id/],
    ['oversized string', (s) => (s.model = { name: 'x'.repeat(65), sha256: 'a'.repeat(64) }), /\/model\/name.*got 65/],
    ['unknown reason', (s) => (s.reasons = ['fever']), /\/reasons\/0/],
    ['unknown decision', (s) => (s.decision = 'fever'), /\/decision/],
    ['implausible temperature', (s) => (s.temperatureC = 900), /\/temperatureC/],
    ['nested extra field', (s) => (s.blackbody = { setC: 35, measuredC: 35, offsetC: 0, raw: 1 }), /\/blackbody\/raw: unexpected field/],
    ['bad timestamp', (s) => (s.ts = 'yesterday'), /\/ts/],
  ];
  for (const [name, mutate, message] of cases) {
    it(`rejects ${name} and names the field`, () => {
      const s = validScreening() as unknown as Record<string, unknown>;
      mutate(s);
      const result = validatePayload('screening', s);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.message).toMatch(message);
    });
  }

  it('rejects malformed JSON and oversized payloads with a clear message', () => {
    const bad = parsePayload('screening', '{"id": ');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.message).toMatch(/^screening: \/: not valid JSON/);
    const big = parsePayload('screening', Buffer.alloc(MAX_JSON_PAYLOAD_BYTES + 1, 0x20));
    expect(big.ok).toBe(false);
    if (!big.ok) expect(big.message).toMatch(/exceeds/);
  });

  it('assertPayload throws a PayloadError carrying the issues', () => {
    const s = { ...validScreening(), frames: 0 };
    expect(() => assertPayload('screening', s)).toThrow(PayloadError);
    try {
      assertPayload('screening', s);
    } catch (err) {
      expect((err as PayloadError).errors[0]?.path).toBe('/frames');
    }
  });
});

describe('state, telemetry, cmd, cmd/ack', () => {
  const base = { ts: '2026-11-22T08:15:30.123Z', site: 'hospital-a', checkpoint: 'gate-2' };

  it('accepts the offline last will and a full online state', () => {
    expect(validatePayload('state', { ...base, status: 'offline' }).ok).toBe(true);
    const online = {
      ...base,
      status: 'online',
      versions: { agent: '0.1.0', protocol: 'v1' },
      sources: { thermal: { kind: 'replay', status: 'ok' }, visible: null },
      model: { name: 'masked-face-640', sha256: 'a'.repeat(64) },
      calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.3, homography: true },
    };
    expect(validatePayload('state', online)).toEqual({ ok: true, value: online });
    const bad = validatePayload('state', { ...online, status: 'maybe' });
    expect(bad.ok).toBe(false);
  });

  it('validates telemetry', () => {
    const t = {
      ...base,
      fps: 8.7,
      stages: { decode: 2.1, inference: 31.5 },
      cpuTempC: 51,
      ambientC: 22,
      blackbody: { setC: 35, measuredC: 34.1, status: 'ok' },
      queueDepth: 0,
    };
    expect(validatePayload('telemetry', t).ok).toBe(true);
    const bad = validatePayload('telemetry', { ...t, queueDepth: -1 });
    expect(!bad.ok && bad.message).toMatch(/\/queueDepth/);
  });

  it('validates each command type and refuses unknown ones', () => {
    expect(validatePayload('cmd', { id: 'c1', type: 'ping' }).ok).toBe(true);
    expect(validatePayload('cmd', { id: 'c2', type: 'set-config', config: { thresholdC: 37.5 } }).ok).toBe(true);
    expect(
      validatePayload('cmd', {
        id: 'c3',
        type: 'update-model',
        model: { name: 'masked-face-640', version: 'v2', url: 'https://gw/models/x.onnx', sha256: 'b'.repeat(64), sizeBytes: 10 },
      }).ok,
    ).toBe(true);
    const unknown = validatePayload('cmd', { id: 'c4', type: 'self-destruct' });
    expect(!unknown.ok && unknown.message).toMatch(/\/type: expected "set-config" or .*got "self-destruct"/);
    const inner = validatePayload('cmd', { id: 'c5', type: 'set-config', config: 'x' });
    expect(!inner.ok && inner.message).toMatch(/\/config/);
    expect(validatePayload('cmd', { id: 'bad id!', type: 'ping' }).ok).toBe(false);
  });

  it('validates acks', () => {
    expect(validatePayload('cmd/ack', { id: 'c1', ts: base.ts, ok: true }).ok).toBe(true);
    expect(validatePayload('cmd/ack', { id: 'c1', ts: base.ts, ok: false, error: 'model hash mismatch' }).ok).toBe(true);
    expect(validatePayload('cmd/ack', { id: 'c1', ts: base.ts, ok: true, progress: 1.5 }).ok).toBe(false);
  });
});
