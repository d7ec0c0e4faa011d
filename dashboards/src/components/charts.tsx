/**
 * Small hand-drawn SVG charts (no chart library: the bundle stays small and works offline).
 * Each has a text alternative (`label` + a visually hidden table or summary) for screen readers.
 */
export interface Series {
  name: string;
  className: string;
  values: number[];
}

const W = 600;
const H = 200;
const PAD = { l: 60, r: 8, t: 8, b: 28 };

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Every how many labels one is drawn, so that none overlaps its neighbour (about 7 px per character at 12 px). */
export function labelStep(labels: readonly string[], innerWidth: number): number {
  if (labels.length === 0) return 1;
  const longest = Math.max(...labels.map((l) => [...l].reduce((w, ch) => w + (/[\u2E80-\u9FFF]/.test(ch) ? 12 : 7), 0)));
  const slot = innerWidth / labels.length;
  return Math.max(1, Math.ceil((longest + 10) / slot));
}

function yAxis(max: number, min = 0, digits = 0, unit = '') {
  const ticks = [0, 0.5, 1].map((f) => min + (max - min) * f);
  const y = (v: number) => PAD.t + (H - PAD.t - PAD.b) * (1 - (v - min) / (max - min || 1));
  return (
    <g class="axis">
      {ticks.map((v) => (
        <g key={v}>
          <line x1={PAD.l} x2={W - PAD.r} y1={y(v)} y2={y(v)} class="grid" />
          <text x={PAD.l - 6} y={y(v) + 4} text-anchor="end">
            {v.toFixed(digits)}
            {unit && v === max ? ` ${unit}` : ''}
          </text>
        </g>
      ))}
    </g>
  );
}

/** Stacked bars, one per label (e.g. hour). */
export function StackedBars({ label, labels, series }: { label: string; labels: string[]; series: Series[] }) {
  const totals = labels.map((_, i) => series.reduce((a, s) => a + (s.values[i] ?? 0), 0));
  const max = niceMax(Math.max(2, ...totals));
  const innerW = W - PAD.l - PAD.r;
  const innerH = H - PAD.t - PAD.b;
  const bw = innerW / Math.max(1, labels.length);
  const every = labelStep(labels, innerW);
  return (
    <svg class="chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label}>
      {yAxis(max)}
      {labels.map((l, i) => {
        let base = 0;
        return (
          <g key={l + i}>
            {series.map((s) => {
              const v = s.values[i] ?? 0;
              const h = (v / max) * innerH;
              const y = PAD.t + innerH - base - h;
              base += h;
              return v > 0 ? (
                <rect key={s.name} class={s.className} x={PAD.l + i * bw + 1} y={y} width={Math.max(1, bw - 2)} height={h}>
                  <title>{`${l} ${s.name}: ${v}`}</title>
                </rect>
              ) : null;
            })}
            {i % every === 0 && (
              <text class="axis" x={PAD.l + i * bw + bw / 2} y={H - 8} text-anchor="middle">
                {l}
              </text>
            )}
          </g>
        );
      })}
    </svg>
  );
}

/**
 * Lines over an index axis (telemetry samples, percentiles per hour); nulls leave gaps. One unit
 * per chart (`unit` on the axis); `threshold` draws a dashed line with its label.
 */
export function Lines({
  label,
  labels,
  series,
  digits = 0,
  min,
  unit = '',
  threshold,
}: {
  label: string;
  labels: string[];
  series: Array<Omit<Series, 'values'> & { values: Array<number | null> }>;
  digits?: number;
  min?: number;
  unit?: string;
  threshold?: { value: number; label: string };
}) {
  const all = series.flatMap((s) => s.values.filter((v): v is number => v !== null)).concat(threshold ? [threshold.value] : []);
  const lo = min ?? (all.length ? Math.floor(Math.min(...all)) : 0);
  const hi = all.length ? Math.max(lo + 1, Math.ceil(Math.max(...all))) : lo + 1;
  const innerW = W - PAD.l - PAD.r;
  const innerH = H - PAD.t - PAD.b;
  const x = (i: number) => PAD.l + (labels.length <= 1 ? innerW / 2 : (i / (labels.length - 1)) * innerW);
  const y = (v: number) => PAD.t + innerH * (1 - (v - lo) / (hi - lo));
  const every = labelStep(labels, innerW);
  return (
    <svg class="chart" viewBox={`0 0 ${W} ${H}`} role="img" aria-label={label}>
      {yAxis(hi, lo, digits, unit)}
      {threshold && (
        <g class="threshold-line" data-threshold={threshold.value}>
          <line x1={PAD.l} x2={W - PAD.r} y1={y(threshold.value)} y2={y(threshold.value)} stroke-dasharray="6 4" />
          <text x={W - PAD.r - 4} y={y(threshold.value) - 4} text-anchor="end">
            {threshold.label}
          </text>
        </g>
      )}
      {series.map((s) => {
        const parts: string[] = [];
        let pen = false;
        s.values.forEach((v, i) => {
          if (v === null) {
            pen = false;
            return;
          }
          parts.push(`${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`);
          pen = true;
        });
        return (
          <g key={s.name} class={s.className}>
            <path d={parts.join(' ')} fill="none" stroke-width="2.5" />
            {s.values.map((v, i) => (v === null ? null : <circle key={i} cx={x(i)} cy={y(v)} r="3" />))}
          </g>
        );
      })}
      {labels.map((l, i) =>
        i % every === 0 ? (
          <text key={i} class="axis" x={x(i)} y={H - 8} text-anchor="middle">
            {l}
          </text>
        ) : null,
      )}
    </svg>
  );
}

export function Legend({ series }: { series: Array<{ name: string; className: string }> }) {
  return (
    <ul class="legend">
      {series.map((s) => (
        <li key={s.name}>
          <svg width="14" height="14" aria-hidden="true">
            <rect class={s.className} width="14" height="14" />
          </svg>{' '}
          {s.name}
        </li>
      ))}
    </ul>
  );
}
