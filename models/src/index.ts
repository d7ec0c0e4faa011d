export * from './manifest.js';
export { defaultMirror, defaultModelsDir, resolveSource } from './paths.js';
export type { Env, ModelSource } from './paths.js';
export {
  ensureModel,
  fetchModels,
  hashFile,
  installModel,
  ModelFetchError,
  ModelIntegrityError,
  verifyModel,
  verifyModels,
} from './store.js';
export type { FetchOptions, FetchProgress, FetchResult, ModelStatus } from './store.js';
