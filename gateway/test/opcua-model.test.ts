/** The OPC UA model (no sockets): values and qualities from live events, condition states, ack comments. */
import { describe, expect, it } from 'vitest';
import type { AlertView, DeviceView, ScreeningSummary } from '../src/store/operational.js';
import { SiteModel, checkpointValues, conditionState, localDay, parseAckComment, robotValues } from '../src/opcua/model.js';

const T0 = new Date(2031, 4, 6, 10, 0, 0).getTime();
const iso = (ms: number) => new Date(ms).toISOString();

function device(status: DeviceView['status'], over: Partial<DeviceView> = {}): DeviceView {
  return {
    site: 'hq',
    checkpoint: 'gate-1',
    status,
    lastSeen: iso(T0),
    stateAt: iso(T0),
    versions: null,
    model: { name: 'm', sha256: 'c'.repeat(64) },
    sources: null,
    calibration: { reference: 'ok', mode: 'absolute', thresholdC: 37.4, homography: true },
    telemetry: null,
    ...over,
  };
}

function screening(decision: ScreeningSummary['decision'], atMs: number, temperatureC: number | null = 36.5): ScreeningSummary {
  return { id: `S${atMs}`, ts: iso(atMs), site: 'hq', checkpoint: 'gate-1', decision, reasons: [], mask: 'mask', temperatureC, thresholdC: 37.3, mode: 'absolute', snapshot: false };
}

function alert(id: string, over: Partial<AlertView> = {}): AlertView {
  return {
    id,
    kind: 'screening',
    severity: 'major',
    status: 'open',
    site: 'hq',
    checkpoint: 'gate-1',
    screeningId: null,
    decision: 'secondary_check',
    reasons: ['elevated_temperature'],
    count: 1,
    openedAt: iso(T0),
    lastAt: iso(T0),
    resolvedAt: iso(T0),
    escalatedAt: null,
    acknowledgement: null,
    closedAt: null,
    groupedInto: null,
    screening: null,
    ...over,
  };
}

describe('checkpoint values', () => {
  it('counts today by decision, keeps the last temperature, and marks device values Bad while offline', () => {
    const site = new SiteModel(localDay(T0));
    const cp = site.apply({ type: 'device', data: device('online') })!;
    site.apply({ type: 'screening', data: screening('pass', T0 + 1000, 36.4) });
    site.apply({ type: 'screening', data: screening('secondary_check', T0 + 2000, 38.0) });
    site.apply({ type: 'screening', data: screening('invalid', T0 + 3000, null) });
    site.apply({ type: 'screening', data: screening('pass', T0 - 86_400_000, 36.0) }); // yesterday: not counted
    let v = checkpointValues(cp);
    expect(v.PassedToday).toMatchObject({ value: 1, quality: 'Good' });
    expect(v.SecondaryChecksToday.value).toBe(1);
    expect(v.LastTemperature).toEqual({ value: 38.0, quality: 'Good', sourceTime: T0 + 2000 });
    expect(v.Threshold.value).toBe(37.4); // the device's calibration wins over the screening's threshold
    expect(v.BlackbodyOk.value).toBe(true);
    expect(v.Online).toMatchObject({ value: true, quality: 'Good' });

    site.apply({ type: 'device', data: device('offline', { calibration: null, model: null }) });
    v = checkpointValues(cp);
    expect(v.Online).toMatchObject({ value: false, quality: 'Good' });
    expect(v.LastTemperature).toMatchObject({ value: 38.0, quality: 'BadNotConnected' });
    expect(v.Threshold).toMatchObject({ value: 37.3, quality: 'BadNotConnected' });
    expect(v.PassedToday.quality).toBe('Good');

    expect(site.rollDay(localDay(T0 + 86_400_000))).toEqual([cp]);
    expect(checkpointValues(cp).PassedToday.value).toBe(0);
  });

  it('a screening the day\'s counts already hold (read at start) updates the last temperature but is not counted again', () => {
    const site = new SiteModel(localDay(T0));
    const cp = site.apply({ type: 'screening', data: screening('pass', T0 + 1000, 36.4) })!;
    site.apply({ type: 'screening', data: screening('secondary_check', T0 + 2000, 38.2) }, false);
    const v = checkpointValues(cp);
    expect(v.PassedToday.value).toBe(1);
    expect(v.SecondaryChecksToday.value).toBe(0);
    expect(v.LastTemperature.value).toBe(38.2);
  });

  it('says it is waiting for data before the device reported', () => {
    const site = new SiteModel(localDay(T0));
    const cp = site.apply({ type: 'screening', data: screening('pass', T0) })!;
    const v = checkpointValues(cp);
    expect(v.Online).toMatchObject({ value: null, quality: 'BadWaitingForInitialData' });
    expect(v.ModelSha256.quality).toBe('BadWaitingForInitialData');
    expect(v.ScreeningMode).toMatchObject({ value: 'absolute', quality: 'Good' });
  });

  it('marks an offline robot\'s reported values Bad and shows "no task" as an empty string', () => {
    const r = robotValues({ id: 'acme/r1', online: false, batteryPct: 40, state: 'offline', lastNodeId: 'n1', currentTaskId: null, currentTaskType: null, updatedAt: T0 });
    expect(r.Battery).toEqual({ value: 40, quality: 'BadNotConnected', sourceTime: T0 });
    expect(r.CurrentTaskId).toMatchObject({ value: '', quality: 'Good' });
  });
});

describe('conditions', () => {
  it('one condition state per alert: a secondary check is active until acknowledged, then closed and no longer retained', () => {
    const site = new SiteModel(localDay(T0));
    const cp = site.apply({ type: 'alert', data: { alert: alert('A1') } })!;
    site.apply({ type: 'alert', data: { alert: alert('A2', { openedAt: iso(T0 + 5) }) } });
    const c = conditionState(cp.alerts.get('A1')!);
    expect(c).toMatchObject({ alertId: 'A1', name: 'SecondaryCheckRequired', active: true, acked: false, retain: true, severity: 700, ack: null });
    // The message depends on its own alert only (another alert does not change it, nor its EventId).
    expect(c.message).toBe('Secondary check required at hq/gate-1 (alert A1)');
    expect(c.message).not.toContain('elevated'); // no health data
    const acked = alert('A1', { status: 'closed', acknowledgement: { by: 'guard', at: iso(T0 + 9), outcome: 'cleared', note: 'fine' } });
    site.apply({ type: 'alert', data: { alert: acked } });
    expect([...cp.alerts.keys()]).toEqual(['A2']);
    expect(cp.closed.map((a) => a.id)).toEqual(['A1']);
    expect(conditionState(cp.closed[0]!)).toMatchObject({ active: false, acked: true, retain: false, ack: { by: 'guard', outcome: 'cleared' } });
    // A closed alert the model never showed has no condition to close.
    site.apply({ type: 'alert', data: { alert: alert('A9', { status: 'closed' }) } });
    expect(cp.closed.map((a) => a.id)).toEqual(['A1']);
  });

  it('CannotScreen stays active while the problem lasts, acknowledged or not, and waits for an ack once over', () => {
    const fault = alert('F1', { kind: 'checkpoint_fault', severity: 'critical', resolvedAt: null, decision: null, reasons: ['blackbody not seen'] });
    let c = conditionState(fault);
    expect(c).toMatchObject({ name: 'CannotScreen', active: true, acked: false, retain: true, severity: 900 });
    expect(c.message).toBe('Cannot screen at hq/gate-1: checkpoint fault: blackbody not seen (alert F1)');
    c = conditionState({ ...fault, status: 'acknowledged' });
    expect(c).toMatchObject({ active: true, acked: true, retain: true });
    c = conditionState({ ...fault, resolvedAt: iso(T0 + 10) });
    expect(c).toMatchObject({ active: false, acked: false, retain: true });
    expect(conditionState({ ...fault, status: 'closed', resolvedAt: iso(T0 + 10) })).toMatchObject({ active: false, acked: true, retain: false });
  });
});

describe('acknowledgement comments', () => {
  it('takes the outcome from the start of the comment', () => {
    expect(parseAckComment('referred: sent to triage', 'SecondaryCheckRequired')).toEqual({ outcome: 'referred', note: 'sent to triage' });
    expect(parseAckComment('False alarm - sun on the lens', 'SecondaryCheckRequired')).toEqual({ outcome: 'false_alarm', note: 'sun on the lens' });
    expect(parseAckComment('retest', 'SecondaryCheckRequired')).toEqual({ outcome: 'retest', note: null });
  });

  it('refuses a secondary check without outcome; device alerts default to cleared', () => {
    expect(parseAckComment('seen', 'SecondaryCheckRequired')).toBeNull();
    expect(parseAckComment('clearedx', 'SecondaryCheckRequired')).toBeNull();
    expect(parseAckComment('technician called', 'CannotScreen')).toEqual({ outcome: 'cleared', note: 'technician called' });
    expect(parseAckComment('', 'CannotScreen')).toEqual({ outcome: 'cleared', note: null });
  });
});
