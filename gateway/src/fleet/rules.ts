/**
 * Rules that turn alert workflow events into tasks, e.g.
 *
 *   - id: disinfect-after-referral
 *     when: { alertAcknowledged: { outcome: referred, checkpoint: gate-2 } }   # checkpoint optional: any
 *     then: { type: disinfection, target: checkpoint-zone, priority: 90, durationS: 300 }
 *
 * `target: checkpoint-zone` resolves to the map zone whose `checkpoint` is the alert's. The task
 * keeps the alert id, so the operator sees where it came from (and the alert can show its task).
 */
import { Type, type Static } from '@sinclair/typebox';
import { compileValidator } from '@checkpoint/protocol';
import type { SiteMap } from './map.js';
import type { TaskRequest } from './tasks.js';

const closed = { additionalProperties: false } as const;

export const RuleSchema = Type.Object(
  {
    id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
    when: Type.Object(
      {
        alertAcknowledged: Type.Object(
          {
            outcome: Type.String({ minLength: 1, maxLength: 64 }),
            checkpoint: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,64}$' })),
            site: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,64}$' })),
          },
          closed,
        ),
      },
      closed,
    ),
    then: Type.Union([
      Type.Object(
        {
          type: Type.Literal('disinfection'),
          target: Type.Literal('checkpoint-zone'),
          priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
          durationS: Type.Optional(Type.Number({ minimum: 1, maximum: 3600 })),
        },
        closed,
      ),
      Type.Object(
        {
          type: Type.Literal('delivery'),
          from: Type.String({ minLength: 1, maxLength: 64 }),
          to: Type.Literal('checkpoint-zone'),
          what: Type.String({ minLength: 1, maxLength: 200 }),
          priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 100 })),
        },
        closed,
      ),
    ]),
  },
  closed,
);
export type Rule = Static<typeof RuleSchema>;

export interface AlertAcknowledged {
  alertId: string;
  site: string;
  checkpoint: string;
  outcome: string;
  by?: string;
}

const validator = compileValidator(Type.Array(RuleSchema, { maxItems: 500 }));

/** Validates rules against their schema and the map (zones for named checkpoints must exist). */
export function loadRules(config: unknown, map: SiteMap): Rule[] {
  if (!validator.check(config)) {
    throw new Error(`invalid fleet rules: ${validator.explain(config).map((e) => `${e.path || '/'}: ${e.message}`).join('; ')}`);
  }
  const issues: string[] = [];
  config.forEach((r, i) => {
    const cp = r.when.alertAcknowledged.checkpoint;
    if (cp && !map.zoneOfCheckpoint(cp)) issues.push(`/${i}/when/alertAcknowledged/checkpoint: no map zone has checkpoint "${cp}"`);
    if (r.then.type === 'delivery' && !map.nodes.has(r.then.from)) issues.push(`/${i}/then/from: unknown node "${r.then.from}"`);
  });
  if (new Set(config.map((r) => r.id)).size !== config.length) issues.push('/: rule ids must be unique');
  if (issues.length > 0) throw new Error(`invalid fleet rules: ${issues.join('; ')}`);
  return config;
}

export interface RuleMatch {
  ruleId: string;
  alertId: string;
  request: TaskRequest;
}

/**
 * The task requests an acknowledgement triggers. A rule whose checkpoint has no zone on the map
 * produces a `skipped` entry instead (the operator should hear about it, not lose it).
 */
export function evaluateRules(
  rules: readonly Rule[],
  event: AlertAcknowledged,
  map: SiteMap,
): { matches: RuleMatch[]; skipped: Array<{ ruleId: string; reason: string }> } {
  const matches: RuleMatch[] = [];
  const skipped: Array<{ ruleId: string; reason: string }> = [];
  for (const rule of rules) {
    const w = rule.when.alertAcknowledged;
    if (w.outcome !== event.outcome) continue;
    if (w.checkpoint && w.checkpoint !== event.checkpoint) continue;
    if (w.site && w.site !== event.site) continue;
    const zone = map.zoneOfCheckpoint(event.checkpoint);
    if (!zone) {
      skipped.push({ ruleId: rule.id, reason: `no map zone for checkpoint ${event.checkpoint}` });
      continue;
    }
    const note = `alert ${event.alertId} at ${event.site}/${event.checkpoint} acknowledged as ${event.outcome}`;
    const t = rule.then;
    const request: TaskRequest =
      t.type === 'disinfection'
        ? { type: 'disinfection', zone: zone.id, note, ...(t.priority !== undefined ? { priority: t.priority } : {}), ...(t.durationS ? { durationS: t.durationS } : {}) }
        : { type: 'delivery', from: t.from, to: zone.nodes[0]!, what: t.what, note, ...(t.priority !== undefined ? { priority: t.priority } : {}) };
    matches.push({ ruleId: rule.id, alertId: event.alertId, request });
  }
  return { matches, skipped };
}
