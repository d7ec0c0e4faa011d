/**
 * `edge-agent calibrate`: the engineer's side of calibration, as one command function the CLI
 * wires up. Two jobs:
 *
 *   --pairs FILE        fit the visible → thermal homography from point pairs (JSON or CSV)
 *   --blackbody         watch the blackbody for N seconds on the configured source and judge its
 *                       stability against the 0.1 °C guidance (finding the region if none is set)
 *
 * With --write CONFIG the result goes into the agent's config file (source.geometry.homography /
 * source.geometry.blackbody), keeping the rest of the file and its comments; a fit that was
 * refused or a blackbody that is not stable is never written.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { loadAgentConfig } from '../config/load.js';
import type { BlackbodyRegion } from '../frames.js';
import { openSource } from '../sources/open.js';
import { assessBlackbodyStability, blackbodySample, findBlackbody, type BlackbodySample, type StabilityReport } from './blackbody.js';
import { CalibrationError, fitHomography, type HomographyFit, type PointPair } from './homography.js';

export interface CalibrateIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  env: Readonly<Record<string, string | undefined>>;
}

export interface CalibrateArgs {
  /** Point pairs file (.json or .csv) to fit the homography from. */
  pairs?: string;
  /** RMS limit in thermal pixels. Default 1.0. */
  maxRmsPx?: number;
  /** Run the blackbody stability check on the configured source. */
  blackbody?: boolean;
  /** Length of the stability check in seconds of frames. Default 180. */
  seconds?: number;
  /** Blackbody region; default the config's, else proposed by findBlackbody on the first frame. */
  region?: { x: number; y: number; w: number; h: number };
  /** Propose the region from the image even when one is configured (the blackbody moved). */
  findRegion?: boolean;
  /** Blackbody set point; default the config's region's. */
  setC?: number;
  /** Judge the reference relative to the scene median (default; cancels camera drift) or raw. */
  judge?: 'relative-to-scene' | 'reading';
  /** Agent config to read the source (and current geometry) from. */
  config?: string;
  /** Config file to write the result into. */
  write?: string;
  /** Print the report as one JSON object instead of text. */
  json?: boolean;
  signal?: AbortSignal;
}

export interface CalibrationOutcome {
  homography?: HomographyFit;
  blackbody?: StabilityReport & { region: BlackbodyRegion; proposed: boolean };
  written?: string;
}

/** Runs the calibration the args ask for; resolves with the exit code (0 done, 1 refused/unstable). */
export async function runCalibrate(args: CalibrateArgs, io: CalibrateIo): Promise<number> {
  if (!args.pairs && !args.blackbody) throw new Error('calibrate: give --pairs FILE (homography) and/or --blackbody (reference stability)');
  const outcome: CalibrationOutcome = {};
  let ok = true;

  if (args.pairs) {
    const pairs = parsePairs(await readText(args.pairs, 'point pairs file'), args.pairs);
    try {
      outcome.homography = fitHomography(pairs, { maxRmsPx: args.maxRmsPx ?? 1.0 });
      if (!args.json) printFit(io, pairs, outcome.homography, args.maxRmsPx ?? 1.0);
    } catch (err) {
      if (!(err instanceof CalibrationError)) throw err;
      if (err.fit && !args.json) printFit(io, pairs, err.fit, args.maxRmsPx ?? 1.0);
      io.stderr(`calibrate: homography refused: ${err.message}`);
      ok = false;
    }
  }

  if (args.blackbody) {
    const result = await checkBlackbody(args, io);
    outcome.blackbody = result;
    if (!args.json) printStability(io, result);
    if (result.verdict !== 'stable') {
      io.stderr(`calibrate: blackbody ${result.verdict}: ${result.problems.join('; ')}`);
      ok = false;
    }
  }

  if (args.write) {
    if (!ok) {
      io.stderr(`calibrate: nothing written to ${args.write} (see above)`);
    } else {
      await writeCalibration(args.write, {
        ...(outcome.homography ? { homography: outcome.homography.homography } : {}),
        ...(outcome.blackbody ? { blackbody: outcome.blackbody.region } : {}),
      }, io.env);
      outcome.written = args.write;
      if (!args.json) io.stdout(`wrote ${[outcome.homography && 'source.geometry.homography', outcome.blackbody && 'source.geometry.blackbody'].filter(Boolean).join(' and ')} to ${args.write}`);
    }
  }
  if (args.json) io.stdout(JSON.stringify(outcome));
  return ok ? 0 : 1;
}

async function checkBlackbody(args: CalibrateArgs, io: CalibrateIo): Promise<StabilityReport & { region: BlackbodyRegion; proposed: boolean }> {
  const config = await loadAgentConfig(args.config, io.env, { site: 'local', checkpoint: 'calibrate' });
  const seconds = args.seconds ?? 180;
  const source = await openSource(config);
  try {
    const known = config.source.geometry?.blackbody ?? source.geometry.blackbody;
    const setC = args.setC ?? known?.setC;
    if (setC === undefined) throw new Error('calibrate: the blackbody set point is unknown: give --set-c (e.g. 35)');
    let region: BlackbodyRegion | null = args.region ? { ...args.region, setC } : known && !args.findRegion ? { ...known, setC } : null;
    let proposed = false;
    const samples: BlackbodySample[] = [];
    for await (const { thermal } of source.frames(args.signal)) {
      if (!region) {
        const found = findBlackbody(thermal, setC);
        if (!found) throw new Error(`calibrate: no uniform square within 3 °C of ${setC} °C in the thermal image: is the blackbody in view and at temperature? Give --region x,y,w,h`);
        region = found.region;
        proposed = true;
        io.stderr(`calibrate: proposed blackbody region ${region.w}x${region.h} at (${region.x},${region.y}) inside a ${found.aperture.w}x${found.aperture.h} uniform square reading ${found.meanC.toFixed(2)} °C`);
      }
      samples.push(blackbodySample(thermal, region));
      if (samples.length % 50 === 0) io.stderr(`calibrate: ${((thermal.timestampMs - samples[0]!.timestampMs) / 1000).toFixed(0)}/${seconds} s`);
      if (thermal.timestampMs - samples[0]!.timestampMs >= seconds * 1000) break;
    }
    if (!region || samples.length < 3) throw new Error(`calibrate: the source gave only ${samples.length} frames`);
    return { ...assessBlackbodyStability(samples, setC, args.judge ? { judge: args.judge } : {}), region, proposed };
  } finally {
    await source.close();
  }
}

/**
 * Point pairs from JSON — `[{visible:{x,y}, thermal:{x,y}}, ...]`, `{pairs: [...]}` or
 * `[[vx, vy, tx, ty], ...]` — or CSV: `vx,vy,tx,ty` per line, optional header, `#` comments.
 */
export function parsePairs(text: string, where: string): PointPair[] {
  if (where.toLowerCase().endsWith('.json') || /^\s*[[{]/.test(text)) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      throw new Error(`${where}: not valid JSON (${(err as Error).message})`);
    }
    const list = Array.isArray(raw) ? raw : (raw as { pairs?: unknown })?.pairs;
    if (!Array.isArray(list)) throw new Error(`${where}: expected an array of pairs or {"pairs": [...]}`);
    return list.map((item: unknown, i) => {
      const at = `${where}: pair ${i + 1}`;
      if (Array.isArray(item)) return pairFromNumbers(item, at);
      const o = item as { visible?: { x?: unknown; y?: unknown }; thermal?: { x?: unknown; y?: unknown } };
      return pairFromNumbers([o?.visible?.x, o?.visible?.y, o?.thermal?.x, o?.thermal?.y], `${at} ({visible:{x,y}, thermal:{x,y}})`);
    });
  }
  const pairs: PointPair[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const s = line.replace(/#.*/, '').trim();
    if (!s) return;
    const cells = s.split(/[,;\t ]+/);
    if (pairs.length === 0 && cells.some((c) => /[a-z]/i.test(c))) return; // header
    pairs.push(pairFromNumbers(cells.map((c) => (c === '' ? NaN : Number(c))), `${where}: line ${i + 1}`));
  });
  return pairs;
}

function pairFromNumbers(values: unknown[], at: string): PointPair {
  if (values.length !== 4 || !values.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new Error(`${at}: expected 4 numbers visible x, visible y, thermal x, thermal y`);
  }
  const [vx, vy, tx, ty] = values as number[];
  return { visible: { x: vx!, y: vy! }, thermal: { x: tx!, y: ty! } };
}

/** "x,y,w,h" → region (for the CLI's --region). */
export function parseRegion(text: string): { x: number; y: number; w: number; h: number } {
  const n = text.split(',').map((s) => Number(s.trim()));
  if (n.length !== 4 || !n.every((v) => Number.isInteger(v) && v >= 0) || n[2]! < 1 || n[3]! < 1) throw new Error(`--region must be x,y,w,h in whole thermal pixels (w, h ≥ 1), got "${text}"`);
  return { x: n[0]!, y: n[1]!, w: n[2]!, h: n[3]! };
}

/**
 * Writes calibration results into an agent config file, changing only source.geometry.homography
 * and/or source.geometry.blackbody. YAML keeps its comments and layout (yaml Document API).
 * The new file is validated as an agent config before it replaces the old one.
 */
export async function writeCalibration(file: string, values: { homography?: readonly number[]; blackbody?: BlackbodyRegion }, env: CalibrateIo['env'] = {}): Promise<void> {
  const text = await readText(file, 'config');
  const homography = values.homography?.map((v) => Number(v.toPrecision(10)));
  let out: string;
  if (file.toLowerCase().endsWith('.json')) {
    const o = JSON.parse(text) as Record<string, Record<string, Record<string, unknown>>>;
    o.source ??= {};
    o.source.geometry ??= {};
    if (homography) o.source.geometry.homography = homography;
    if (values.blackbody) o.source.geometry.blackbody = { ...values.blackbody };
    out = `${JSON.stringify(o, null, 2)}\n`;
  } else {
    const doc = parseDocument(text);
    if (doc.errors.length) throw new Error(`cannot parse config ${file}: ${doc.errors[0]!.message}`);
    if (homography) doc.setIn(['source', 'geometry', 'homography'], doc.createNode(homography, { flow: true }));
    if (values.blackbody) doc.setIn(['source', 'geometry', 'blackbody'], doc.createNode({ ...values.blackbody }, { flow: true }));
    out = doc.toString();
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file, path.extname(file))}.calibrate-tmp${path.extname(file)}`);
  await writeFile(tmp, out);
  try {
    await loadAgentConfig(tmp, env);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new Error(`calibrate: not writing ${file}: the result would not be a valid config (${(err as Error).message})`);
  }
  await rename(tmp, file);
}

function printFit(io: CalibrateIo, pairs: PointPair[], fit: HomographyFit, maxRmsPx: number): void {
  const h = fit.homography.map((v) => Number(v.toPrecision(6)));
  io.stdout(`homography (visible → thermal, row-major) from ${pairs.length} pairs:`);
  io.stdout(`  [${h.join(', ')}]`);
  io.stdout('  pair  visible            thermal            residual px');
  pairs.forEach((p, i) => {
    const c = (a: number, b: number) => `${a.toFixed(1)},${b.toFixed(1)}`.padEnd(19);
    io.stdout(`  ${String(i + 1).padEnd(5)} ${c(p.visible.x, p.visible.y)}${c(p.thermal.x, p.thermal.y)}${fit.residualsPx[i]!.toFixed(3)}${i === fit.worstPair ? '  (worst)' : ''}`);
  });
  io.stdout(`RMS reprojection error ${fit.rmsPx.toFixed(3)} thermal px (limit ${maxRmsPx})`);
  for (const w of fit.warnings) io.stdout(`note: ${w}`);
}

function printStability(io: CalibrateIo, r: StabilityReport & { region: BlackbodyRegion; proposed: boolean }): void {
  const g = r.region;
  io.stdout(`blackbody region ${g.w}x${g.h} at (${g.x},${g.y}), set point ${g.setC} °C${r.proposed ? ' (proposed)' : ''}`);
  io.stdout(`  ${r.frames} frames over ${r.durationS.toFixed(0)} s; mean ${r.meanC.toFixed(2)} °C (offset ${r.offsetC >= 0 ? '+' : ''}${r.offsetC.toFixed(2)} °C), range ${r.minC.toFixed(2)}..${r.maxC.toFixed(2)} °C`);
  io.stdout(`  ${r.judged === 'reading' ? 'reading' : 'reference vs scene'}: drift ${r.driftCPerMin.toFixed(4)} °C/min (${r.driftOverWindowC.toFixed(3)} °C over the check), noise σ ${r.noiseC.toFixed(3)} °C; spatial σ ${r.regionStdC.toFixed(3)} °C`);
  if (r.judged !== 'reading') io.stdout(`  raw reading (camera + reference, corrected per frame): drift ${r.readingDriftCPerMin.toFixed(4)} °C/min, noise σ ${r.readingNoiseC.toFixed(3)} °C`);
  io.stdout(`  verdict: ${r.verdict} (guidance: drift and noise within ${r.limitC} °C)`);
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}
