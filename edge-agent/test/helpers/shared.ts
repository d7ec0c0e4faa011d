/** Where tests find ../shared (models mirror and datasets), and the env they run the agent with. */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const SHARED_DIR = fileURLToPath(new URL('../../../../shared/', import.meta.url));
export const FACES_DIR = `${SHARED_DIR}datasets/mask-sample/`;
export const MODELS_MIRROR = process.env.CHECKPOINT_MODELS_MIRROR ?? `${SHARED_DIR}models`;
export const haveShared = existsSync(FACES_DIR) && existsSync(MODELS_MIRROR);

if (!haveShared) {
  console.warn(`tests that need ../shared are skipped: ${SHARED_DIR} (models mirror and datasets) is absent`);
}

/** Env for in-process agent runs: models from the mirror into a per-run folder. */
export function agentEnv(modelsDir: string): Record<string, string | undefined> {
  return { CHECKPOINT_MODELS_MIRROR: MODELS_MIRROR, CHECKPOINT_MODELS_DIR: modelsDir, CHECKPOINT_LOG_LEVEL: 'silent' };
}
