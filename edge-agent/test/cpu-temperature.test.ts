import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseZoneTemp, readCpuTemperature } from '../src/telemetry/cpu-temperature.js';

/** A sysfs-like thermal folder: one thermal_zoneN/{type,temp} per entry. */
async function thermalTree(zones: Array<{ type?: string; temp?: string }>, extra: string[] = []): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'thermal-'));
  dirs.push(dir);
  for (const [i, z] of zones.entries()) {
    const zone = path.join(dir, `thermal_zone${i}`);
    await mkdir(zone);
    if (z.type !== undefined) await writeFile(path.join(zone, 'type'), `${z.type}\n`);
    if (z.temp !== undefined) await writeFile(path.join(zone, 'temp'), `${z.temp}\n`);
  }
  for (const name of extra) await mkdir(path.join(dir, name));
  return dir;
}
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('CPU temperature from thermal zones', () => {
  it('parses millidegrees and refuses garbage and implausible values', () => {
    expect(parseZoneTemp('48312\n')).toBe(48.3);
    expect(parseZoneTemp('-5000')).toBe(-5);
    expect(parseZoneTemp('')).toBeNull();
    expect(parseZoneTemp('48.3')).toBeNull();
    expect(parseZoneTemp('999000')).toBeNull(); // 999 °C: a broken sensor, not a hot CPU
  });

  it('reads a Raspberry Pi (one cpu-thermal zone)', async () => {
    expect(await readCpuTemperature(await thermalTree([{ type: 'cpu-thermal', temp: '51540' }], ['cooling_device0']))).toBe(51.5);
  });

  it('prefers the CPU zone over GPU and PMIC zones (Jetson, x86)', async () => {
    const jetson = await thermalTree([
      { type: 'AO-therm', temp: '36500' },
      { type: 'CPU-therm', temp: '42000' },
      { type: 'GPU-therm', temp: '40500' },
      { type: 'PMIC-Die', temp: '100000' },
    ]);
    expect(await readCpuTemperature(jetson)).toBe(42);
    const x86 = await thermalTree([{ type: 'acpitz', temp: '27800' }, { type: 'x86_pkg_temp', temp: '55000' }]);
    expect(await readCpuTemperature(x86)).toBe(55);
  });

  it('falls back to any readable zone, skipping unreadable ones', async () => {
    const dir = await thermalTree([{ type: 'cpu-thermal' }, { type: 'board', temp: 'n/a' }, { type: 'board', temp: '39900' }]);
    expect(await readCpuTemperature(dir)).toBe(39.9);
  });

  it('is null without thermal zones (containers, VMs) and never throws', async () => {
    expect(await readCpuTemperature(await thermalTree([]))).toBeNull();
    expect(await readCpuTemperature(path.join(tmpdir(), 'no-such-thermal-dir'))).toBeNull();
  });
});
