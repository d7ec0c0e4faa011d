/** Edge profiles: what each one stands for, and that the config file and the environment still win. */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { getManifest } from '@checkpoint/models';
import { loadAgentConfig } from '../src/config/load.js';
import { EDGE_PROFILES, EDGE_PROFILE_NAMES } from '../src/config/profiles.js';

const base = { site: 'hq', checkpoint: 'gate-1' };

describe('edge profiles', () => {
  it.each(EDGE_PROFILE_NAMES)('%s: the stated input size is the model\'s and the model tells masks apart', (name) => {
    const p = EDGE_PROFILES[name];
    const m = getManifest(p.model);
    expect([m.input.shape[3], m.input.shape[2]]).toEqual([...p.inputSize]);
    expect(m.labels).toContain('masked_face');
  });

  it('fills in model, threads and frames in flight', async () => {
    const config = await loadAgentConfig(undefined, {}, { ...base, profile: 'jetson' });
    expect(config.model).toMatchObject({ name: 'masked-face-640', threads: 4, framesInFlight: 2 });
  });

  it('the file wins over the profile, and CHECKPOINT_EDGE_PROFILE chooses one', async () => {
    const file = path.join(await mkdtemp(path.join(tmpdir(), 'edge-profile-')), 'agent.yaml');
    await writeFile(file, 'site: hq\ncheckpoint: gate-1\nmodel:\n  threads: 2\n');
    const config = await loadAgentConfig(file, { CHECKPOINT_EDGE_PROFILE: 'pi' });
    expect(config.profile).toBe('pi');
    expect(config.model).toMatchObject({ name: 'masked-face-640', threads: 2, framesInFlight: 1 });
  });

  it('names an unknown profile', async () => {
    await expect(loadAgentConfig(undefined, {}, { ...base, profile: 'pi3' })).rejects.toThrow(/\/profile/);
  });
});
