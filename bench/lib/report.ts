// One row per figure: Kelid's number, its baseline measured in the same run on the same token, how
// they compare, and (where the issue sets one) the target it is reported against. Never asserted.

export type Better = 'higher' | 'lower';

export interface Row {
  section: string;
  measure: string;
  unit: string;
  baselineLabel: string;
  baseline: number;
  kelid: number;
  /** Whether a larger number is better (throughput) or worse (time, memory). */
  better: Better;
  /** Kelid relative to the baseline: a fraction of it (throughput) or a multiple of it (time). */
  relative: number;
  target?: Target;
  note?: string;
}

/** A target of the issue the row is reported against (never asserted). */
export interface Target {
  text: string;
  met: boolean;
  /** The measured figure as the target reads it, when that is not the row's Kelid value. */
  measured?: string;
}

export function row(r: Omit<Row, 'relative'> & { relative?: number }): Row {
  const relative = r.relative ?? (r.baseline === 0 ? Number.NaN : r.kelid / r.baseline);
  return { ...r, relative };
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (Math.abs(x) >= 100) return String(Math.round(x));
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function relativeText(r: Row): string {
  if (!Number.isFinite(r.relative)) return 'n/a';
  return r.better === 'higher' ? `${Math.round(r.relative * 100)}% of baseline` : `${r.relative.toFixed(2)}×`;
}

/** The figure a target is judged on: its own `measured` text, else the row's Kelid value. */
function measuredText(r: Row): string {
  if (r.target?.measured !== undefined) return r.target.measured;
  const value = `${fmt(r.kelid)} ${r.unit}`;
  return r.better === 'higher' && Number.isFinite(r.relative) ? `${relativeText(r)} (${value})` : value;
}

/** One line per target, met or missed, ahead of the detailed sections. */
export function targetsTable(rows: readonly Row[]): string[] {
  const withTarget = rows.filter((r) => r.target);
  if (withTarget.length === 0) return [];
  return [
    '',
    '**Targets**',
    '',
    '| measure | measured | target | |',
    '|---|---:|---|---|',
    ...withTarget.map(
      (r) =>
        `| ${r.measure} | ${measuredText(r)} | ${r.target!.text} | ${r.target!.met ? 'met' : '**missed**'} |`,
    ),
  ];
}

export function markdown(
  rows: readonly Row[],
  meta: { date: string; node: string; cpus: number; profile: string; seconds: number },
): string {
  const out = [
    `Measured ${meta.date} (node ${meta.node}, ${meta.cpus} cores, profile \`${meta.profile}\`, ` +
      `${Math.round(meta.seconds)} s) with \`npm run bench\`; every baseline is raw pkcs11js on the same ` +
      'SoftHSM token in the same run.',
    '',
    ...targetsTable(rows),
  ];
  // Rows grouped by section, sections in the order they first appear.
  const order = [...new Set(rows.map((r) => r.section))];
  const grouped = order.flatMap((s) => rows.filter((r) => r.section === s));
  let section = '';
  for (const r of grouped) {
    if (r.section !== section) {
      section = r.section;
      out.push(
        '',
        `**${section}**`,
        '',
        '| measure | baseline | baseline value | Kelid | Kelid vs baseline | target |',
        '|---|---|---:|---:|---:|---|',
      );
    }
    const target = r.target ? `${r.target.text}: ${r.target.met ? 'met' : '**missed**'}` : '';
    const note = r.note ? ` (${r.note})` : '';
    out.push(
      `| ${r.measure}${note} | ${r.baselineLabel} | ${fmt(r.baseline)} ${r.unit} | ${fmt(r.kelid)} ${r.unit} | ${relativeText(r)} | ${target} |`,
    );
  }
  return `${out.join('\n')}\n`;
}
