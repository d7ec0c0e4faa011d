import { describe, expect, it } from 'vitest';
import { judgeSelfTest, keepReferenceFace, type ReferenceFace } from '../src/pipeline/reference-faces.js';

const box = { x1: 100, y1: 80, x2: 220, y2: 230 };
const face = (atMs: number): ReferenceFace => ({ encoded: Buffer.from([atMs & 0xff]), box, atMs });
const shifted = (dx: number) => ({ ...box, x1: box.x1 + dx, x2: box.x2 + dx });

describe('reference faces for a model self-test', () => {
  it('keeps at most five, newest last, at least a second apart', () => {
    const kept: ReferenceFace[] = [];
    for (let t = 0; t < 10_000; t += 250) keepReferenceFace(kept, face(t));
    expect(kept.map((f) => f.atMs)).toEqual([5000, 6000, 7000, 8000, 9000]);
    // A clock that went back (a replayed file) does not freeze the ring.
    keepReferenceFace(kept, face(100));
    expect(kept.at(-1)!.atMs).toBe(100);
  });

  it('passes a model that finds most faces and confirms one, though it scores some low', () => {
    const observations = [
      { reference: box, faces: [{ box, score: 0.9 }] },
      { reference: box, faces: [{ box: shifted(5), score: 0.45 }] }, // a masked face scored low
      { reference: box, faces: [] }, // missed one
    ];
    const v = judgeSelfTest(observations, 0.6);
    expect(v).toEqual({ ok: true, detail: 'found 2 of 3 reference faces, best score 0.90' });
  });

  it('refuses a model that finds faces elsewhere, or none, or never confidently', () => {
    const elsewhere = [{ reference: box, faces: [{ box: shifted(200), score: 0.99 }] }];
    expect(judgeSelfTest(elsewhere, 0.6)).toEqual({ ok: false, detail: 'found 0 of 1 reference faces, best score 0.00 (best overlap 0.00)' });
    const unsure = [1, 2, 3].map(() => ({ reference: box, faces: [{ box, score: 0.4 }] }));
    expect(judgeSelfTest(unsure, 0.6).ok).toBe(false);
    const mostlyBlind = [{ reference: box, faces: [{ box, score: 0.9 }] }, ...[1, 2].map(() => ({ reference: box, faces: [] }))];
    expect(judgeSelfTest(mostlyBlind, 0.6).ok).toBe(false);
    expect(judgeSelfTest([], 0.6).ok).toBe(false);
  });
});
