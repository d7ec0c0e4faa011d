/**
 * The alert workflow as pure functions (no I/O, no clock: `now` is passed in). The store feeds
 * them the current facts and applies the changes they return in one transaction.
 *
 * Lifecycle (after ThingsBoard's active/cleared × unacknowledged/acknowledged):
 *   open ──ack──> acknowledged ──resolved──> closed
 *   open ──resolved──> open (resolvedAt set: the guard must still acknowledge) ──ack──> closed
 * "Resolved" means the condition is over: a screening alert is an event, so it is resolved from
 * the start and its acknowledgement closes it; a checkpoint-offline alert is resolved when the
 * checkpoint is back online; an invalid storm when its checkpoint has been quiet for a window.
 */
import type { CheckpointState, Decision } from '@checkpoint/protocol';

export const ALERT_KINDS = ['screening', 'invalid_storm', 'checkpoint_offline', 'checkpoint_fault'] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];
export const ALERT_STATUSES = ['open', 'acknowledged', 'closed'] as const;
export type AlertStatus = (typeof ALERT_STATUSES)[number];
export const OUTCOMES = ['cleared', 'referred', 'false_alarm', 'retest'] as const;
export type Outcome = (typeof OUTCOMES)[number];
export type Severity = 'critical' | 'major' | 'minor';

export interface Acknowledgement {
  by: string;
  at: number;
  outcome: Outcome;
  note: string | null;
}

export interface Alert {
  id: string;
  kind: AlertKind;
  severity: Severity;
  status: AlertStatus;
  site: string;
  checkpoint: string;
  /** The screening of a `screening` alert (one alert per screening). */
  screeningId: string | null;
  decision: Decision | null;
  reasons: string[];
  /** Screenings folded into this alert (storms), else 1. */
  count: number;
  openedAt: number;
  /** Last time the condition was seen (storms: last invalid screening). */
  lastAt: number;
  resolvedAt: number | null;
  escalatedAt: number | null;
  ack: Acknowledgement | null;
  closedAt: number | null;
  /** A storm alert this alert was folded into (closed without acknowledgement). */
  groupedInto: string | null;
}

export interface AlertPolicy {
  escalateAfterMs: number;
  invalidStormCount: number;
  invalidStormWindowMs: number;
}

/** What happened to an alert, for the audit log and the live feed. */
export type AlertAction = 'opened' | 'updated' | 'acknowledged' | 'closed' | 'escalated' | 'resolved' | 'grouped';

export interface AlertChange {
  action: AlertAction;
  alert: Alert;
}

export interface ScreeningFacts {
  id: string;
  tsMs: number;
  site: string;
  checkpoint: string;
  decision: Decision;
  reasons: string[];
}

export interface ScreeningContext {
  /** The checkpoint's storm alert that is not closed, if any. */
  activeStorm: Alert | null;
  /** Invalid screenings of this checkpoint within the storm window before this one (not counting it). */
  recentInvalidCount: number;
  /** Those screenings' own alerts that are still open (folded into a new storm). */
  recentInvalidAlerts: Alert[];
}

function newAlert(fields: Pick<Alert, 'id' | 'kind' | 'severity' | 'site' | 'checkpoint'> & Partial<Alert> & { openedAt: number }): Alert {
  return {
    status: 'open',
    screeningId: null,
    decision: null,
    reasons: [],
    count: 1,
    lastAt: fields.openedAt,
    resolvedAt: null,
    escalatedAt: null,
    ack: null,
    closedAt: null,
    groupedInto: null,
    ...fields,
  };
}

/**
 * Alerts for one newly stored screening: `secondary_check` and `cannot_screen` (a person seen but
 * not measured) always get their own alert (a person to check, never folded into a storm);
 * `invalid` gets its own alert unless the checkpoint is in an invalid storm, which is
 * one device alert with a count.
 */
export function screeningAlertChanges(s: ScreeningFacts, ctx: ScreeningContext, policy: AlertPolicy, newId: () => string): AlertChange[] {
  if (s.decision === 'pass') return [];
  const base = { site: s.site, checkpoint: s.checkpoint };
  if (s.decision === 'secondary_check' || s.decision === 'cannot_screen') {
    return [
      {
        action: 'opened',
        alert: newAlert({
          ...base,
          id: newId(),
          kind: 'screening',
          severity: 'major',
          screeningId: s.id,
          decision: s.decision,
          reasons: s.reasons,
          openedAt: s.tsMs,
          resolvedAt: s.tsMs,
        }),
      },
    ];
  }
  // invalid
  const storm = ctx.activeStorm;
  if (storm && s.tsMs - storm.lastAt <= policy.invalidStormWindowMs) {
    const reasons = [...new Set([...storm.reasons, ...s.reasons])];
    return [{ action: 'updated', alert: { ...storm, count: storm.count + 1, lastAt: Math.max(storm.lastAt, s.tsMs), reasons, resolvedAt: null } }];
  }
  const inWindow = ctx.recentInvalidCount + 1;
  if (inWindow >= policy.invalidStormCount) {
    const stormAlert = newAlert({
      ...base,
      id: newId(),
      kind: 'invalid_storm',
      severity: 'major',
      decision: 'invalid',
      reasons: [...new Set([...ctx.recentInvalidAlerts.flatMap((a) => a.reasons), ...s.reasons])],
      count: inWindow,
      openedAt: s.tsMs,
    });
    const grouped: AlertChange[] = ctx.recentInvalidAlerts
      .filter((a) => a.status === 'open')
      .map((a) => ({ action: 'grouped', alert: { ...a, status: 'closed', closedAt: s.tsMs, groupedInto: stormAlert.id } }));
    return [{ action: 'opened', alert: stormAlert }, ...grouped];
  }
  return [
    {
      action: 'opened',
      alert: newAlert({
        ...base,
        id: newId(),
        kind: 'screening',
        severity: 'minor',
        screeningId: s.id,
        decision: s.decision,
        reasons: s.reasons,
        openedAt: s.tsMs,
        resolvedAt: s.tsMs,
      }),
    },
  ];
}

/** Why a checkpoint in this state cannot screen, or null when it can. */
export function faultOf(state: CheckpointState): string | null {
  if (state.status === 'offline') return null;
  const thermal = state.sources?.thermal;
  if (thermal?.status === 'error') return 'thermal camera error';
  if (state.sources?.visible?.status === 'error') return 'visible camera error';
  if (state.calibration?.reference === 'not_seen' && state.calibration.mode === 'absolute') return 'blackbody not seen';
  return null;
}

export interface DeviceContext {
  activeOffline: Alert | null;
  activeFault: Alert | null;
}

/**
 * Alerts from a checkpoint's (retained) state: offline (the last will) opens a
 * checkpoint-offline alert, online resolves it; a source error opens a fault alert.
 * Idempotent: the retained state is delivered again on every (re)subscription.
 */
export function deviceStateAlertChanges(state: CheckpointState, ctx: DeviceContext, nowMs: number, newId: () => string): AlertChange[] {
  const changes: AlertChange[] = [];
  const base = { site: state.site, checkpoint: state.checkpoint };
  if (state.status === 'offline') {
    if (!ctx.activeOffline) {
      changes.push({ action: 'opened', alert: newAlert({ ...base, id: newId(), kind: 'checkpoint_offline', severity: 'critical', openedAt: nowMs }) });
    } else if (ctx.activeOffline.resolvedAt !== null) {
      // Went away again before anyone acknowledged the first outage.
      changes.push({ action: 'updated', alert: { ...ctx.activeOffline, resolvedAt: null, lastAt: nowMs, count: ctx.activeOffline.count + 1 } });
    }
  } else if (ctx.activeOffline) {
    const resolved = resolve(ctx.activeOffline, nowMs);
    if (resolved) changes.push(resolved);
  }
  const fault = faultOf(state);
  if (fault && !ctx.activeFault) {
    changes.push({ action: 'opened', alert: newAlert({ ...base, id: newId(), kind: 'checkpoint_fault', severity: 'critical', reasons: [fault], openedAt: nowMs }) });
  } else if (!fault && ctx.activeFault && state.status === 'online') {
    const resolved = resolve(ctx.activeFault, nowMs);
    if (resolved) changes.push(resolved);
  }
  return changes;
}

/** The condition is over: acknowledged alerts close, open ones wait for their acknowledgement. */
export function resolve(alert: Alert, nowMs: number): AlertChange | null {
  if (alert.status === 'closed' || alert.resolvedAt !== null) return null;
  if (alert.status === 'acknowledged') return { action: 'closed', alert: { ...alert, status: 'closed', resolvedAt: nowMs, closedAt: nowMs } };
  return { action: 'resolved', alert: { ...alert, resolvedAt: nowMs } };
}

export type AckResult = { ok: true; change: AlertChange } | { ok: false; reason: 'not_open'; message: string };

/** A guard acknowledges an open alert with the outcome of the secondary check. */
export function acknowledge(alert: Alert, ack: Omit<Acknowledgement, 'at'>, nowMs: number): AckResult {
  if (alert.status !== 'open') {
    return { ok: false, reason: 'not_open', message: `alert ${alert.id} is ${alert.status}, only open alerts can be acknowledged` };
  }
  const acknowledged: Alert = { ...alert, ack: { ...ack, note: ack.note ?? null, at: nowMs }, status: 'acknowledged' };
  if (alert.resolvedAt !== null) return { ok: true, change: { action: 'closed', alert: { ...acknowledged, status: 'closed', closedAt: nowMs } } };
  return { ok: true, change: { action: 'acknowledged', alert: acknowledged } };
}

/** Periodic check: escalate open alerts past the deadline, resolve storms that went quiet. */
export function periodicChanges(active: Alert[], nowMs: number, policy: AlertPolicy): AlertChange[] {
  const changes: AlertChange[] = [];
  for (const alert of active) {
    let current = alert;
    if (current.status === 'open' && current.escalatedAt === null && nowMs - current.openedAt >= policy.escalateAfterMs) {
      current = { ...current, escalatedAt: nowMs };
      changes.push({ action: 'escalated', alert: current });
    }
    if (current.kind === 'invalid_storm' && current.resolvedAt === null && nowMs - current.lastAt > policy.invalidStormWindowMs) {
      const resolved = resolve(current, nowMs);
      if (resolved) changes.push(resolved);
    }
  }
  return changes;
}
