import { describe, expect, it } from 'vitest';
import { parseBuildInfo } from '../src/version.js';

describe('build info (the version every program reports)', () => {
  it('takes the stamp the release wrote', () => {
    expect(parseBuildInfo('{"version":"0.3.0+g1a2b3c4","commit":"1a2b3c4","builtAt":"2026-12-02T10:00:00Z"}', '{"version":"0.1.0"}')).toEqual({
      version: '0.3.0+g1a2b3c4',
      commit: '1a2b3c4',
      builtAt: '2026-12-02T10:00:00Z',
    });
  });
  it('marks a source checkout as -dev so it never passes for a release', () => {
    expect(parseBuildInfo(null, '{"version":"0.1.0"}').version).toBe('0.1.0-dev');
  });
  it('refuses a stamp whose version is not a version string, naming the file', () => {
    expect(() => parseBuildInfo('{"version":"0.1.0; rm -rf /"}', '{}')).toThrow(/version\.json: "version"/);
  });
});
