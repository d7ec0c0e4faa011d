/** Opens the source the config names. Live hardware sources are paired in pair.ts. */
import type { AgentConfig } from '../config/schema.js';
import type { FrameSource, SceneGeometry, ThermalSource } from '../frames.js';
import { openGyMcu90640 } from './gy-mcu90640.js';
import { openHttpSnapshot } from './http-snapshot.js';
import { openMjpegCommand, type VisibleSource } from './mjpeg.js';
import { pairSources } from './pair.js';
import { openReplay } from './replay.js';
import { openY16Stream } from './y16-stream.js';
import { createSimSource } from './sim/index.js';

export async function openSource(config: AgentConfig): Promise<FrameSource> {
  const t = config.source.thermal;
  switch (t.kind) {
    case 'sim':
      return createSimSource({
        realtime: t.realtime,
        feverRate: t.feverRate,
        maskRate: t.maskRate,
        seed: t.seed,
        traffic: t.traffic,
        ...(t.queueRate !== undefined ? { queueRate: t.queueRate } : {}),
        ...(t.people !== undefined ? { people: t.people } : {}),
        ...(t.facesDir !== undefined ? { facesDir: t.facesDir } : {}),
      });
    case 'replay':
      return openReplay(t.dir, { realtime: t.realtime });
  }
  // Live hardware: the geometry comes from the config (calibration writes it there).
  let thermal: ThermalSource;
  let size: { width: number; height: number };
  if (t.kind === 'gy-mcu90640') {
    thermal = await openGyMcu90640({ path: t.path, baudRate: t.baudRate });
    size = { width: 32, height: 24 };
  } else {
    thermal = openY16Stream({ command: t.command, width: t.width, height: t.height });
    size = { width: t.width, height: t.height };
  }
  const v = config.source.visible;
  let visible: VisibleSource | null = null;
  if (v?.kind === 'mjpeg-command') visible = openMjpegCommand({ command: v.command });
  else if (v?.kind === 'http-snapshot') visible = openHttpSnapshot({ url: v.url, intervalMs: v.intervalMs });
  const g = config.source.geometry ?? {};
  const geometry: SceneGeometry = {
    fps: g.fps ?? (t.kind === 'gy-mcu90640' ? 4 : 8.7),
    thermal: size,
    // The visible size is read from each frame; the homography maps its pixels.
    visible: visible ? { width: 0, height: 0 } : null,
    homography: g.homography ?? null,
    blackbody: g.blackbody ?? null,
    ambientC: g.ambientC ?? null,
  };
  return pairSources(thermal, visible, geometry);
}
