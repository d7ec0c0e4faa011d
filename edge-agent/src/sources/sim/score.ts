/**
 * Scoring a replay of a simulated scene against its truth (pure): which person each decision
 * belongs to (by where its face was, not only when), and the figures a gate promises — every
 * person screened exactly once, no decision for nobody, fevers flagged, masks right.
 */
import type { PersonTruth } from './people.js';

export interface ScoredDecision {
  decision: string;
  reasons: readonly string[];
  mask: string;
  temperatureC: number | null;
  detectedBy?: string;
  /** A frame of the decision's track and its face box there, in visible pixels. */
  where: { seq: number; box: { x1: number; y1: number; x2: number; y2: number } };
}

export interface WalkingFigures {
  people: number;
  decisions: number;
  exactlyOne: number;
  moreThanOne: number;
  none: number;
  /** Decisions that belong to nobody. */
  spurious: number;
  feverish: number;
  feverFlagged: number;
  /** Healthy people flagged elevated_temperature. */
  falseAlarms: number;
  /** People with a decision whose mask state is known (the visible model saw the face). */
  maskKnown: number;
  maskRight: number;
  cannotScreen: number;
  byDetector: Record<string, number>;
  /** Up to 12 people the figures count against, for the log. */
  examples: string[];
}

const overlap = (a: ScoredDecision['where']['box'], b: { x: number; y: number; w: number; h: number }): number => {
  const w = Math.max(0, Math.min(a.x2, b.x + b.w) - Math.max(a.x1, b.x));
  const h = Math.max(0, Math.min(a.y2, b.y + b.h) - Math.max(a.y1, b.y));
  const inter = w * h;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + b.w * b.h - inter;
  return union > 0 ? inter / union : 0;
};

/** The visible frame the simulator draws in: truth boxes may reach past it, detector boxes never do. */
const FRAME = { width: 640, height: 480 };

const clipped = (b: { x: number; y: number; w: number; h: number }): { x: number; y: number; w: number; h: number } => {
  const x = Math.max(0, b.x);
  const y = Math.max(0, b.y);
  return { x, y, w: Math.max(0, Math.min(FRAME.width, b.x + b.w) - x), h: Math.max(0, Math.min(FRAME.height, b.y + b.h) - y) };
};

/**
 * The person whose face was where the decision's face was in that frame: the decision box
 * overlaps the face (as much of it as is inside the picture) with IoU >= 0.1, or lies mostly
 * (>= 60 %) inside it. Null when nobody's face was there.
 */
export function personOf(people: readonly PersonTruth[], d: ScoredDecision): PersonTruth | null {
  let best: PersonTruth | null = null;
  let bestScore = 0.1;
  for (const p of people) {
    if (d.where.seq < p.frames[0] || d.where.seq > p.frames[1]) continue;
    const truthBox = p.faceBoxes[d.where.seq - p.frames[0]];
    if (!truthBox) continue;
    const box = clipped(truthBox);
    const b = d.where.box;
    const area = Math.max(1e-9, (b.x2 - b.x1) * (b.y2 - b.y1));
    const inside = (Math.max(0, Math.min(b.x2, box.x + box.w) - Math.max(b.x1, box.x)) * Math.max(0, Math.min(b.y2, box.y + box.h) - Math.max(b.y1, box.y))) / area;
    const score = Math.max(overlap(b, box), inside >= 0.6 ? inside : 0);
    if (score >= bestScore) {
      best = p;
      bestScore = score;
    }
  }
  return best;
}

export function scoreDecisions(people: readonly PersonTruth[], decisions: readonly ScoredDecision[]): WalkingFigures {
  const byPerson = new Map<number, ScoredDecision[]>();
  let spurious = 0;
  const spuriousExamples: string[] = [];
  for (const d of decisions) {
    const p = personOf(people, d);
    if (p) byPerson.set(p.index, [...(byPerson.get(p.index) ?? []), d]);
    else {
      spurious++;
      const b = d.where.box;
      spuriousExamples.push(`spurious ${d.decision}/${d.reasons.join('+') || '-'}/${d.detectedBy ?? '?'} at [${Math.round(b.x1)},${Math.round(b.y1)} ${Math.round(b.x2 - b.x1)}w] in frame ${d.where.seq}`);
    }
  }
  const f: WalkingFigures = {
    people: people.length,
    decisions: decisions.length,
    exactlyOne: 0,
    moreThanOne: 0,
    none: 0,
    spurious,
    feverish: 0,
    feverFlagged: 0,
    falseAlarms: 0,
    maskKnown: 0,
    maskRight: 0,
    cannotScreen: 0,
    byDetector: {},
    examples: [],
  };
  for (const p of people) {
    const got = byPerson.get(p.index) ?? [];
    if (got.length === 1) f.exactlyOne++;
    else if (got.length === 0) f.none++;
    else f.moreThanOne++;
    const flagged = got.some((g) => g.decision === 'secondary_check' && g.reasons.includes('elevated_temperature'));
    if (p.elevated) {
      f.feverish++;
      if (flagged) f.feverFlagged++;
    } else if (flagged) f.falseAlarms++;
    const first = got[0];
    if (first) {
      if (first.mask !== 'unknown') {
        f.maskKnown++;
        if (first.mask === p.mask) f.maskRight++;
      }
      if (first.decision === 'cannot_screen') f.cannotScreen++;
      const by = first.detectedBy ?? 'unset';
      f.byDetector[by] = (f.byDetector[by] ?? 0) + 1;
    }
    const bad = got.length !== 1 || (p.elevated && !flagged) || (first && first.mask !== 'unknown' && first.mask !== p.mask);
    if (bad && f.examples.length < 12) {
      const sizes = p.faceBoxes.map((b) => b.w);
      f.examples.push(
        `#${p.index} frames ${p.frames.join('-')} face ${Math.min(...sizes)}-${Math.max(...sizes)} px ${p.mask} ${p.canthusC} °C -> ` +
          (got.map((g) => `${g.decision}/${g.reasons.join('+') || '-'}/${g.temperatureC ?? '-'}/${g.mask}/${g.detectedBy ?? '?'}@${g.where.seq}`).join(' , ') || 'no decision'),
      );
    }
  }
  f.examples.push(...spuriousExamples.slice(0, 6));
  return f;
}

const pct = (n: number, of: number): string => (of === 0 ? 'n/a' : `${((100 * n) / of).toFixed(1)} %`);

/** The figures as the issue states its targets, one per line. */
export function formatFigures(f: WalkingFigures): string {
  return [
    `people ${f.people}, decisions ${f.decisions}`,
    `exactly one decision: ${pct(f.exactlyOne, f.people)} (${f.exactlyOne})   [target >= 98 %]`,
    `more than one:        ${pct(f.moreThanOne, f.people)} (${f.moreThanOne})   [target <= 1 %]`,
    `no decision:          ${pct(f.none, f.people)} (${f.none})`,
    `spurious decisions:   ${pct(f.spurious, f.people)} of people (${f.spurious})   [target <= 1 %]`,
    `feverish flagged:     ${pct(f.feverFlagged, f.feverish)} (${f.feverFlagged}/${f.feverish})   [target >= 99 %]`,
    `false alarms:         ${pct(f.falseAlarms, f.people - f.feverish)} (${f.falseAlarms})`,
    `mask right:           ${pct(f.maskRight, f.maskKnown)} of ${f.maskKnown} people with a visible face   [target >= 95 %]`,
    `cannot_screen:        ${f.cannotScreen}; found by ${Object.entries(f.byDetector).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    ...f.examples.map((e) => `  ${e}`),
  ].join('\n');
}

/** Sums figures over several runs (seeds). */
export function addFigures(a: WalkingFigures, b: WalkingFigures): WalkingFigures {
  const byDetector = { ...a.byDetector };
  for (const [k, v] of Object.entries(b.byDetector)) byDetector[k] = (byDetector[k] ?? 0) + v;
  const sum = (k: keyof WalkingFigures): number => (a[k] as number) + (b[k] as number);
  return {
    people: sum('people'),
    decisions: sum('decisions'),
    exactlyOne: sum('exactlyOne'),
    moreThanOne: sum('moreThanOne'),
    none: sum('none'),
    spurious: sum('spurious'),
    feverish: sum('feverish'),
    feverFlagged: sum('feverFlagged'),
    falseAlarms: sum('falseAlarms'),
    maskKnown: sum('maskKnown'),
    maskRight: sum('maskRight'),
    cannotScreen: sum('cannotScreen'),
    byDetector,
    examples: [...a.examples, ...b.examples].slice(0, 24),
  };
}
