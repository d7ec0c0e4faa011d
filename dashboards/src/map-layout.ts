/**
 * Where map labels go (pure): each label tries places around its point — above, below, right,
 * left, then the corners, then the same further out — and takes the first that overlaps no label placed before it and no
 * marker; when every place collides it takes the one with the least overlap. Sizes are in the
 * map's own units, estimated from the text (CJK characters are about one em wide, Latin ones
 * about 0.62 em), so the estimate errs on the wide side.
 */
export interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface LabelRequest {
  id: string;
  /** The point the label belongs to (SVG coordinates). */
  x: number;
  y: number;
  text: string;
  fontSize: number;
  /** Clearance between the point and the label. */
  gap: number;
  bold?: boolean;
}

export interface PlacedLabel {
  id: string;
  box: Box;
  /** Text anchor point and alignment to draw it with. */
  textX: number;
  textY: number;
  anchor: 'start' | 'middle' | 'end';
}

const CJK = /[\u2E80-\u9FFF\uF900-\uFAFF\uFF00-\uFFEF]/;

export function textWidth(text: string, fontSize: number, bold = false): number {
  let em = 0;
  for (const ch of text) em += CJK.test(ch) ? 1 : bold ? 0.66 : 0.62;
  return em * fontSize;
}

export function overlap(a: Box, b: Box): number {
  const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
  const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
  return w > 0 && h > 0 ? w * h : 0;
}

export function placeLabels(labels: readonly LabelRequest[], obstacles: readonly Box[]): PlacedLabel[] {
  const placed: PlacedLabel[] = [];
  for (const l of labels) {
    const w = textWidth(l.text, l.fontSize, l.bold);
    const h = l.fontSize * 1.2;
    const g = l.gap;
    // Baseline sits ~0.85 of the line height below the box top.
    const base = h * 0.82;
    // Rings of places, nearest first: a point crowded by robot markers pushes its label outwards.
    const ring = (k: number) => [
      { box: { x: l.x - w / 2, y: l.y - g * k - h, w, h }, anchor: 'middle' }, // above
      { box: { x: l.x - w / 2, y: l.y + g * k, w, h }, anchor: 'middle' }, // below
      { box: { x: l.x + g * k, y: l.y - h / 2, w, h }, anchor: 'start' }, // right
      { box: { x: l.x - g * k - w, y: l.y - h / 2, w, h }, anchor: 'end' }, // left
      { box: { x: l.x + g * k * 0.5, y: l.y - g * k - h, w, h }, anchor: 'start' }, // above right
      { box: { x: l.x - g * k * 0.5 - w, y: l.y - g * k - h, w, h }, anchor: 'end' }, // above left
      { box: { x: l.x + g * k * 0.5, y: l.y + g * k, w, h }, anchor: 'start' }, // below right
      { box: { x: l.x - g * k * 0.5 - w, y: l.y + g * k, w, h }, anchor: 'end' }, // below left
    ];
    const candidates: PlacedLabel[] = [
      ...ring(1),
      ...ring(2.2),
      ...ring(3.4),
    ].map((c) => ({
      id: l.id,
      box: c.box,
      anchor: c.anchor as PlacedLabel['anchor'],
      textX: c.anchor === 'middle' ? c.box.x + w / 2 : c.anchor === 'start' ? c.box.x : c.box.x + w,
      textY: c.box.y + base,
    }));
    let best = candidates[0]!;
    let bestCost = Infinity;
    for (const c of candidates) {
      let cost = 0;
      for (const p of placed) cost += overlap(c.box, p.box);
      for (const o of obstacles) cost += overlap(c.box, o);
      if (cost < bestCost) {
        best = c;
        bestCost = cost;
        if (cost === 0) break;
      }
    }
    placed.push(best);
  }
  return placed;
}
