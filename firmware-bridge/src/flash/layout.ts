/**
 * Flash layouts: which erase unit ("page" for Extended Erase; a sector on F2/F4) covers which
 * addresses. The bootloader does not report its page size, so the host needs a table keyed by the
 * chip ID that Get ID returns (values from the reference manuals / AN2606 product list).
 */

export interface FlashLayout {
  /** Start of main flash, normally 0x08000000. */
  base: number;
  /** Runs of equally sized erase units from `base` upwards (uniform parts have one run). */
  runs: readonly { count: number; size: number }[];
}

export interface ChipInfo {
  name: string;
  layout: FlashLayout;
}

const KiB = 1024;
const FLASH_BASE = 0x0800_0000;
const uniform = (count: number, size: number): FlashLayout => ({ base: FLASH_BASE, runs: [{ count, size }] });

/** Parts whose bootloader uses Extended Erase (0x44). Sizes are the largest flash of the line. */
export const KNOWN_CHIPS: Readonly<Record<number, ChipInfo>> = {
  0x413: { name: 'STM32F405/407/415/417', layout: { base: FLASH_BASE, runs: [{ count: 4, size: 16 * KiB }, { count: 1, size: 64 * KiB }, { count: 7, size: 128 * KiB }] } },
  0x415: { name: 'STM32L47x/48x', layout: uniform(512, 2 * KiB) },
  0x435: { name: 'STM32L43x/44x', layout: uniform(128, 2 * KiB) },
  0x460: { name: 'STM32G07x/08x', layout: uniform(64, 2 * KiB) },
  0x462: { name: 'STM32L45x/46x', layout: uniform(256, 2 * KiB) },
  0x464: { name: 'STM32L41x/42x', layout: uniform(64, 2 * KiB) },
  0x466: { name: 'STM32G03x/04x', layout: uniform(32, 2 * KiB) },
  0x468: { name: 'STM32G431/441', layout: uniform(64, 2 * KiB) },
};

export function layoutSize(layout: FlashLayout): number {
  return layout.runs.reduce((s, r) => s + r.count * r.size, 0);
}

/** Every erase unit as [page number, start address, size]. */
export function pages(layout: FlashLayout): { page: number; start: number; size: number }[] {
  const out: { page: number; start: number; size: number }[] = [];
  let start = layout.base;
  for (const run of layout.runs) {
    for (let i = 0; i < run.count; i++) {
      out.push({ page: out.length, start, size: run.size });
      start += run.size;
    }
  }
  return out;
}

/** The page numbers that [address, address + length) touches; throws when it leaves flash. */
export function pagesFor(layout: FlashLayout, address: number, length: number): number[] {
  const end = address + length;
  const top = layout.base + layoutSize(layout);
  if (length <= 0) throw new RangeError('nothing to write: the image is empty');
  if (address < layout.base || end > top) {
    throw new RangeError(`image 0x${address.toString(16)}..0x${end.toString(16)} lies outside flash 0x${layout.base.toString(16)}..0x${top.toString(16)}`);
  }
  return pages(layout)
    .filter((p) => p.start < end && p.start + p.size > address)
    .map((p) => p.page);
}

/** The page that holds `address`, or undefined outside flash. */
export function pageAt(layout: FlashLayout, address: number): { page: number; start: number; size: number } | undefined {
  return pages(layout).find((p) => address >= p.start && address < p.start + p.size);
}
