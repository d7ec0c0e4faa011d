/**
 * The release version every program prints with `--version` and the agent puts in its state
 * message. `npm run release` writes `version.json` into the protocol package of each bundle
 * ({"version":"0.1.0+g1a2b3c4","commit":"…","builtAt":"…"}); a source checkout has none and
 * reports the workspace version with a `-dev` suffix, so a bench box never passes for a release.
 */
import { readFileSync } from 'node:fs';

export interface BuildInfo {
  version: string;
  commit: string | null;
  builtAt: string | null;
}

/** Pure: the build info from the stamp file's text (or null when absent) and package.json's text. */
export function parseBuildInfo(stampText: string | null, packageJsonText: string): BuildInfo {
  if (stampText !== null) {
    const stamp = JSON.parse(stampText) as Partial<BuildInfo>;
    if (typeof stamp.version !== 'string' || !/^[0-9A-Za-z.+-]{1,64}$/.test(stamp.version)) {
      throw new Error(`version.json: "version" must be a version string, got ${JSON.stringify(stamp.version)}`);
    }
    return { version: stamp.version, commit: stamp.commit ?? null, builtAt: stamp.builtAt ?? null };
  }
  const pkg = JSON.parse(packageJsonText) as { version?: string };
  return { version: `${pkg.version ?? '0.0.0'}-dev`, commit: null, builtAt: null };
}

let cached: BuildInfo | undefined;

/** The build info of this installation (read once; the files sit next to src/ and dist/). */
export function buildInfo(): BuildInfo {
  if (cached) return cached;
  const read = (name: string) => {
    try {
      return readFileSync(new URL(`../${name}`, import.meta.url), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  };
  cached = parseBuildInfo(read('version.json'), read('package.json') ?? '{}');
  return cached;
}

/** The version string, e.g. `0.1.0+g1a2b3c4` in a release, `0.1.0-dev` in a checkout. */
export const checkpointVersion = (): string => buildInfo().version;
