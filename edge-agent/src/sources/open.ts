/** Opens the source the config names. Live hardware sources are paired in pair.ts. */
import type { AgentConfig } from '../config/schema.js';
import type { FrameSource } from '../frames.js';
import { openReplay } from './replay.js';
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
        ...(t.people !== undefined ? { people: t.people } : {}),
        ...(t.facesDir !== undefined ? { facesDir: t.facesDir } : {}),
      });
    case 'replay':
      return openReplay(t.dir, { realtime: t.realtime });
    default:
      throw new Error(`source "${t.kind}" needs a visible camera pairing that this build does not wire yet`);
  }
}
