/**
 * CPU temperature for telemetry, from Linux thermal zones (/sys/class/thermal/thermal_zone*):
 * each zone has a `type` and a `temp` in millidegrees Celsius. A fanless gate box that throttles
 * shows it here first, so engineers see it beside fps on the devices page.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

export const THERMAL_ZONES_DIR = '/sys/class/thermal';

/**
 * Zone types that mean the CPU/SoC, best first: Raspberry Pi (`cpu-thermal`, older kernels
 * `cpu_thermal`), Jetson (`CPU-therm`, Orin `cpu-thermal`), Rockchip/Amlogic (`soc-thermal`),
 * x86 (`x86_pkg_temp`, then the ACPI zone). Other zones (GPU, PMIC, battery) are used only when
 * none of these exists.
 */
const CPU_ZONE_TYPES = ['cpu-thermal', 'cpu_thermal', 'cpu-therm', 'soc-thermal', 'soc_thermal', 'x86_pkg_temp', 'acpitz'];

/** Plausible die temperatures; outside this a zone is broken or not a temperature at all. */
const MIN_C = -40;
const MAX_C = 150;

/** `temp` file contents (millidegrees) -> °C, or null when it is not a plausible reading. */
export function parseZoneTemp(text: string): number | null {
  const trimmed = text.trim();
  if (!/^-?\d+$/.test(trimmed)) return null;
  const c = Number(trimmed) / 1000;
  return c >= MIN_C && c <= MAX_C ? Math.round(c * 10) / 10 : null;
}

const readText = (file: string): Promise<string | null> => readFile(file, 'utf8').catch(() => null);

/**
 * The CPU's temperature in °C, or null where the box has no readable thermal zone (containers,
 * most VMs). Never throws: telemetry goes out without it.
 */
export async function readCpuTemperature(dir = THERMAL_ZONES_DIR): Promise<number | null> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /^thermal_zone\d+$/.test(n));
  } catch {
    return null;
  }
  names.sort((a, b) => Number(a.slice(12)) - Number(b.slice(12)));
  const zones = await Promise.all(
    names.map(async (n) => {
      const [type, temp] = await Promise.all([readText(path.join(dir, n, 'type')), readText(path.join(dir, n, 'temp'))]);
      const rank = CPU_ZONE_TYPES.indexOf((type ?? '').trim().toLowerCase());
      return { rank: rank < 0 ? CPU_ZONE_TYPES.length : rank, celsius: temp === null ? null : parseZoneTemp(temp) };
    }),
  );
  const readable = zones.filter((z): z is { rank: number; celsius: number } => z.celsius !== null);
  if (readable.length === 0) return null;
  return readable.reduce((best, z) => (z.rank < best.rank ? z : best)).celsius;
}
