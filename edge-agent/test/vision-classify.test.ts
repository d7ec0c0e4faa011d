/**
 * classifyImages against the labelled mask-sample crops (the acceptance: >= 97 % agree
 * with labels.csv using the default masked-face-640 model), plus its output contract.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL, getManifest } from '@checkpoint/models';
import { classifyImages, FaceDetector, type ClassifyResult } from '../src/vision/index.js';

const SHARED = fileURLToPath(new URL('../../../shared/', import.meta.url));
const MODELS_DIR = path.resolve(process.env.CHECKPOINT_MODELS_MIRROR ?? path.join(SHARED, 'models'));
const MASK_SAMPLE = path.join(SHARED, 'datasets', 'mask-sample');
const haveData = existsSync(MODELS_DIR) && existsSync(MASK_SAMPLE);
if (!haveData) console.warn(`vision-classify tests skipped: need ${MODELS_DIR} and ${MASK_SAMPLE}`);

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe.skipIf(!haveData)('classifyImages', () => {
  let detector: FaceDetector;
  beforeAll(async () => {
    const manifest = getManifest(DEFAULT_MODEL);
    detector = await FaceDetector.create({ modelPath: path.join(MODELS_DIR, manifest.file), manifest, threads: 2 });
  });
  afterAll(async () => detector?.close());

  it('agrees with labels.csv on at least 97 % of the mask-sample images', { timeout: 300_000 }, async () => {
    const csv = await readFile(path.join(MASK_SAMPLE, 'labels.csv'), 'utf8');
    const labels = new Map(
      csv
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => line.split(',') as [string, string]),
    );
    expect(labels.size).toBe(120);
    const files = [...labels.keys()].map((f) => path.join(MASK_SAMPLE, f));
    const results = await collect(classifyImages(detector, files));

    const predicted = ['mask', 'no_mask', 'none'] as const;
    const confusion: Record<string, Record<string, number>> = {};
    const wrong: string[] = [];
    for (const r of results) {
      const label = labels.get(path.basename(r.file)) as string;
      confusion[label] ??= Object.fromEntries(predicted.map((p) => [p, 0]));
      (confusion[label] as Record<string, number>)[r.mask] = ((confusion[label] as Record<string, number>)[r.mask] ?? 0) + 1;
      if (r.mask !== label) wrong.push(`${path.basename(r.file)}: ${label} -> ${r.mask} (maskScore ${r.maskScore?.toFixed(2) ?? '-'})`);
    }
    const agree = results.length - wrong.length;
    console.log(`mask-sample: ${agree}/${results.length} agree (${((100 * agree) / results.length).toFixed(1)} %)`);
    console.log('confusion (rows: label, columns: predicted)');
    console.table(confusion);
    if (wrong.length > 0) console.log(`disagreements:\n  ${wrong.join('\n  ')}`);
    expect(results).toHaveLength(120);
    expect(agree / results.length).toBeGreaterThanOrEqual(0.97);
  });

  it('yields JSON-ready results in order, with file names as given', async () => {
    const rel = path.relative(process.cwd(), path.join(MASK_SAMPLE, 'with_mask_000.jpg'));
    const abs = path.join(MASK_SAMPLE, 'without_mask_000.jpg');
    const results: ClassifyResult[] = await collect(classifyImages(detector, [rel, abs]));
    expect(results.map((r) => r.file)).toEqual([rel, abs]);
    expect(JSON.parse(JSON.stringify(results))).toEqual(results);
    const [masked, bare] = results as [ClassifyResult, ClassifyResult];
    expect(masked.mask).toBe('mask');
    expect(bare.mask).toBe('no_mask');
    expect(masked.faces[0]?.score).toBe(masked.score);
    expect(masked.maskScore).toBeGreaterThan(0.5);
  });

  it("says 'none' when there is no face", async () => {
    // a plain grey picture
    const sharp = (await import('sharp')).default;
    const blank = await sharp({ create: { width: 200, height: 200, channels: 3, background: '#888' } }).png().toBuffer();
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(path.join(tmpdir(), 'classify-'));
    try {
      await writeFile(path.join(dir, 'blank.png'), blank);
      const [r] = await collect(classifyImages(detector, [path.join(dir, 'blank.png')]));
      expect(r).toEqual({ file: path.join(dir, 'blank.png'), mask: 'none', score: null, maskScore: null, faces: [] });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the file it cannot read', async () => {
    await expect(collect(classifyImages(detector, ['no/such/file.jpg']))).rejects.toThrow(/cannot classify no\/such\/file\.jpg: .*ENOENT/);
  });
});
