import { describe, expect, it } from 'vitest';
import { NOT_AN_INSTANT, timestampProblem, validatePayload, validateVda5050 } from '@checkpoint/protocol';
import { validScreening } from './fixtures.js';

describe('timestamps that match the pattern but name no instant', () => {
  it('timestampProblem names what does not exist', () => {
    expect(timestampProblem('2024-12-31T23:59:60Z')).toMatch(/leap second/);
    expect(timestampProblem('2024-13-45T25:61:61Z')).toMatch(/month 13/);
    expect(timestampProblem('2023-02-29T00:00:00Z')).toMatch(/day 29 does not exist in 2023-02/);
    expect(timestampProblem('2024-04-31T00:00:00Z')).toMatch(/day 31/);
    expect(timestampProblem('2024-01-01T24:00:00Z')).toMatch(/hour 24/);
    expect(timestampProblem('2024-01-01T00:60:00Z')).toMatch(/minute 60/);
    expect(timestampProblem('2024-01-01T00:00:00+24:00')).toMatch(/offset/);
    expect(timestampProblem('2024-02-29T23:59:59.999Z')).toBeNull();
    expect(timestampProblem('2000-02-29T00:00:00Z')).toBeNull();
    expect(timestampProblem('2017-04-15T11:40:03.123456789+02:00')).toBeNull();
  });

  for (const ts of ['2024-12-31T23:59:60Z', '2024-13-45T25:61:61Z', '2023-02-29T12:00:00.000Z']) {
    it(`the screening validator refuses ${ts} with a coded issue naming /ts`, () => {
      const result = validatePayload('screening', { ...validScreening(), ts });
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.errors).toEqual([expect.objectContaining({ path: '/ts', code: NOT_AN_INSTANT })]);
      expect(result.message).toMatch(/\/ts: not a real instant: /);
    });
  }

  it('state, telemetry and cmd/ack refuse it too; a shape error is not coded as a bad instant', () => {
    const ts = '2024-12-31T23:59:60Z';
    const state = validatePayload('state', { ts, site: 'hq', checkpoint: 'gate-1', status: 'offline' });
    expect(state.ok === false && state.errors[0]?.code).toBe(NOT_AN_INSTANT);
    const ack = validatePayload('cmd/ack', { id: 'c1', ts, ok: true });
    expect(ack.ok === false && ack.errors[0]?.code).toBe(NOT_AN_INSTANT);
    const shape = validatePayload('cmd/ack', { id: 'c1', ts: 'yesterday', ok: true });
    expect(shape.ok === false && shape.errors[0]?.code).toBeUndefined();
  });

  it('the VDA 5050 validator refuses a header timestamp that names no instant', () => {
    const result = validateVda5050('connection', {
      headerId: 1,
      timestamp: '2024-02-30T10:00:00Z',
      version: '2.0.0',
      manufacturer: 'acme',
      serialNumber: 'amr-1',
      connectionState: 'ONLINE',
    });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors).toEqual([expect.objectContaining({ path: '/timestamp', code: NOT_AN_INSTANT })]);
  });
});
