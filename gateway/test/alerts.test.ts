import { describe, expect, it } from 'vitest';
import type { CheckpointState } from '@checkpoint/protocol';
import {
  acknowledge,
  deviceStateAlertChanges,
  periodicChanges,
  screeningAlertChanges,
  type Alert,
  type AlertPolicy,
  type ScreeningFacts,
} from '../src/alerts.js';

const policy: AlertPolicy = { escalateAfterMs: 120_000, invalidStormCount: 3, invalidStormWindowMs: 60_000 };
let n = 0;
const newId = () => `A${String(++n).padStart(25, '0')}`;
const none = { activeStorm: null, recentInvalidCount: 0, recentInvalidAlerts: [] };
const facts = (over: Partial<ScreeningFacts> = {}): ScreeningFacts => ({
  id: 'S1',
  tsMs: 1_000_000,
  site: 'hq',
  checkpoint: 'gate-1',
  decision: 'secondary_check',
  reasons: ['elevated_temperature'],
  ...over,
});

describe('screening alerts', () => {
  it('a pass opens nothing; a secondary check opens one alert for that screening', () => {
    expect(screeningAlertChanges(facts({ decision: 'pass', reasons: [] }), none, policy, newId)).toEqual([]);
    const [change, ...rest] = screeningAlertChanges(facts(), none, policy, newId);
    expect(rest).toEqual([]);
    expect(change).toMatchObject({ action: 'opened', alert: { kind: 'screening', status: 'open', screeningId: 'S1', decision: 'secondary_check', severity: 'major', count: 1 } });
  });

  it('an invalid screening opens its own alert until a storm, which folds the open ones into one device alert with a count', () => {
    const single = screeningAlertChanges(facts({ decision: 'invalid', reasons: ['too_cold_retry'] }), none, policy, newId);
    expect(single).toHaveLength(1);
    expect(single[0]!.alert).toMatchObject({ kind: 'screening', severity: 'minor' });

    const earlier = [single[0]!.alert, { ...single[0]!.alert, id: newId(), screeningId: 'S0' }];
    const storm = screeningAlertChanges(
      facts({ id: 'S3', decision: 'invalid', reasons: ['no_reference'] }),
      { activeStorm: null, recentInvalidCount: 2, recentInvalidAlerts: earlier },
      policy,
      newId,
    );
    expect(storm[0]).toMatchObject({ action: 'opened', alert: { kind: 'invalid_storm', count: 3, screeningId: null } });
    expect(storm[0]!.alert.reasons.sort()).toEqual(['no_reference', 'too_cold_retry']);
    expect(storm.slice(1).map((c) => [c.action, c.alert.status, c.alert.groupedInto])).toEqual([
      ['grouped', 'closed', storm[0]!.alert.id],
      ['grouped', 'closed', storm[0]!.alert.id],
    ]);

    // The next invalid one within the window only counts.
    const more = screeningAlertChanges(facts({ id: 'S4', decision: 'invalid', tsMs: 1_030_000 }), { ...none, activeStorm: storm[0]!.alert }, policy, newId);
    expect(more).toEqual([{ action: 'updated', alert: { ...storm[0]!.alert, count: 4, lastAt: 1_030_000, reasons: expect.any(Array) } }]);
    // A secondary check during a storm is still its own alert: a person to check.
    expect(screeningAlertChanges(facts({ id: 'S5' }), { ...none, activeStorm: storm[0]!.alert }, policy, newId)[0]!.alert.kind).toBe('screening');
  });

  it('a cannot_screen opens its own major alert with its reason, even during an invalid storm', () => {
    const stormAlert = screeningAlertChanges(facts({ id: 'S1', decision: 'invalid', reasons: ['no_reference'] }), { ...none, recentInvalidCount: 5 }, policy, newId)[0]!.alert;
    expect(stormAlert.kind).toBe('invalid_storm');
    for (const ctx of [none, { ...none, activeStorm: stormAlert, recentInvalidCount: 5 }]) {
      const changes = screeningAlertChanges(facts({ id: 'S6', decision: 'cannot_screen', reasons: ['face_too_small'] }), ctx, policy, newId);
      expect(changes).toHaveLength(1);
      expect(changes[0]).toMatchObject({
        action: 'opened',
        alert: { kind: 'screening', status: 'open', severity: 'major', screeningId: 'S6', decision: 'cannot_screen', reasons: ['face_too_small'] },
      });
    }
  });
});

describe('acknowledgement and escalation', () => {
  const open = screeningAlertChanges(facts(), none, policy, newId)[0]!.alert;

  it('a guard acknowledges an open screening alert with an outcome, which closes it; a second ack is refused', () => {
    const result = acknowledge(open, { by: 'guard1', outcome: 'referred', note: 'sent to triage' }, 1_010_000);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.change.action).toBe('closed');
    expect(result.change.alert).toMatchObject({ status: 'closed', closedAt: 1_010_000, ack: { by: 'guard1', at: 1_010_000, outcome: 'referred', note: 'sent to triage' } });
    expect(acknowledge(result.change.alert, { by: 'guard2', outcome: 'cleared', note: null }, 1_020_000)).toMatchObject({ ok: false, reason: 'not_open' });
  });

  it('escalates an open alert once, after the configured time', () => {
    expect(periodicChanges([open], open.openedAt + 119_999, policy)).toEqual([]);
    const [escalated] = periodicChanges([open], open.openedAt + 120_000, policy);
    expect(escalated).toMatchObject({ action: 'escalated', alert: { escalatedAt: open.openedAt + 120_000, status: 'open' } });
    expect(periodicChanges([escalated!.alert], open.openedAt + 500_000, policy)).toEqual([]);
  });

  it('resolves a storm that went quiet for a window', () => {
    const storm: Alert = { ...open, kind: 'invalid_storm', screeningId: null, resolvedAt: null, escalatedAt: 1, lastAt: 1_000_000 };
    expect(periodicChanges([storm], 1_060_000, policy)).toEqual([]);
    expect(periodicChanges([storm], 1_060_001, policy)[0]).toMatchObject({ action: 'resolved', alert: { resolvedAt: 1_060_001, status: 'open' } });
  });
});

describe('checkpoint state alerts', () => {
  const state = (over: Partial<CheckpointState>): CheckpointState => ({ status: 'online', ts: '2024-05-01T10:00:00.000Z', site: 'hq', checkpoint: 'gate-1', ...over });

  it('offline (the last will) opens one alert; online resolves it; an acknowledged one then closes', () => {
    const [opened] = deviceStateAlertChanges(state({ status: 'offline' }), { activeOffline: null, activeFault: null }, 5000, newId);
    expect(opened).toMatchObject({ action: 'opened', alert: { kind: 'checkpoint_offline', severity: 'critical', status: 'open' } });
    // The retained offline state again (gateway resubscribed): nothing new.
    expect(deviceStateAlertChanges(state({ status: 'offline' }), { activeOffline: opened!.alert, activeFault: null }, 6000, newId)).toEqual([]);

    const [resolved] = deviceStateAlertChanges(state({}), { activeOffline: opened!.alert, activeFault: null }, 7000, newId);
    expect(resolved).toMatchObject({ action: 'resolved', alert: { status: 'open', resolvedAt: 7000 } });
    const ack = acknowledge(resolved!.alert, { by: 'g', outcome: 'cleared', note: null }, 8000);
    expect(ack.ok && ack.change.alert.status).toBe('closed');

    const acked = acknowledge(opened!.alert, { by: 'g', outcome: 'cleared', note: null }, 5500);
    expect(acked.ok && acked.change.alert.status).toBe('acknowledged');
    if (!acked.ok) return;
    expect(deviceStateAlertChanges(state({}), { activeOffline: acked.change.alert, activeFault: null }, 9000, newId)[0]).toMatchObject({
      action: 'closed',
      alert: { status: 'closed', closedAt: 9000 },
    });
  });

  it('a thermal camera error opens a fault alert that clears when the source is ok again', () => {
    const sources = (status: 'ok' | 'error') => ({ thermal: { kind: 'sim', status }, visible: null });
    const [fault] = deviceStateAlertChanges(state({ sources: sources('error') }), { activeOffline: null, activeFault: null }, 1, newId);
    expect(fault).toMatchObject({ action: 'opened', alert: { kind: 'checkpoint_fault', reasons: ['thermal camera error'] } });
    expect(deviceStateAlertChanges(state({ sources: sources('ok') }), { activeOffline: null, activeFault: fault!.alert }, 2, newId)[0]!.action).toBe('resolved');
  });
});
