// Owns the bench's results shape and its Markdown rendering: the targets table, per-phase figures, the profile.
import type { CycleRun } from './cycles.ts';
import type { BenchOptions } from './options.ts';
import type { HotFunction } from './profile.ts';
import { median, ratio } from './stats.ts';
import type { TokenRun } from './tokens.ts';

export interface Machine {
  /** 1-minute load average when the run started and when it ended: the machine is shared. */
  load: { start: number; end: number };
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  platform: string;
}

export interface RateFigure {
  count: number;
  ms: number;
  perSecond: number;
}

export interface StormFigure {
  cars: number;
  connected: number;
  ms: number;
  /** CPU time per connected car, µs, by process (what the storm costs whatever else the machine runs). */
  cpuPerCarUs?: Record<string, number>;
}

export interface MemoryFigure {
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
  cars: number;
  rssPerCarKiB: number;
  heapPerCarKiB: number;
  /** The simulator process, per car (for orientation: it is not the broker). */
  simulatorRssPerCarKiB: number;
}

/** CPU time per completed cycle, µs, by process. */
export type CpuPerCycle = Record<string, number>;

export interface CyclePhase {
  label: string;
  storm: StormFigure;
  runs: CycleRun[];
  cpu: CpuPerCycle[];
  /** One courier alone, after the loaded runs: the round trip without queueing. */
  alone?: CycleRun;
}

export interface BenchResults {
  startedAt: string;
  command: string;
  machine: Machine;
  options: Omit<BenchOptions, 'phases'> & { phases: number[] };
  identities?: { memory: RateFigure; disk: RateFigure };
  storm?: StormFigure;
  memory?: MemoryFigure;
  embedded?: CyclePhase;
  mosquitto?: CyclePhase | { skipped: string };
  floor?: CyclePhase;
  tokens?: TokenRun[];
  profile?: { file: string; top: HotFunction[] };
  notes: string[];
}

/** Medians over repeats of the figures a cycle run reports. */
export interface CycleMedians {
  cyclesPerSecond: number;
  unlockP50: number;
  unlockP99: number;
  unlockMax: number;
  lockP50: number;
  lockP99: number;
  cycleP50: number;
  cycleP99: number;
  errors: number;
  completed: number;
  cpu: CpuPerCycle;
  aloneUnlockP50: number;
  aloneUnlockP99: number;
}

export function cycleMedians(phase: CyclePhase): CycleMedians {
  const of = (pick: (r: CycleRun) => number): number => median(phase.runs.map(pick));
  const cpu: CpuPerCycle = {};
  for (const name of Object.keys(phase.cpu[0] ?? {})) cpu[name] = median(phase.cpu.map((c) => c[name] ?? 0));
  return {
    cyclesPerSecond: of((r) => r.cyclesPerSecond),
    unlockP50: of((r) => r.unlock.p50),
    unlockP99: of((r) => r.unlock.p99),
    unlockMax: of((r) => r.unlock.max),
    lockP50: of((r) => r.lock.p50),
    lockP99: of((r) => r.lock.p99),
    cycleP50: of((r) => r.cycle.p50),
    cycleP99: of((r) => r.cycle.p99),
    errors: phase.runs.reduce((sum, r) => sum + r.errors, 0) + (phase.alone?.errors ?? 0),
    completed: phase.runs.reduce((sum, r) => sum + r.completed, 0) + (phase.alone?.completed ?? 0),
    cpu,
    aloneUnlockP50: phase.alone?.unlock.p50 ?? Number.NaN,
    aloneUnlockP99: phase.alone?.unlock.p99 ?? Number.NaN,
  };
}

const isPhase = (p: BenchResults['mosquitto']): p is CyclePhase => p !== undefined && 'runs' in p;

export function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return '—';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function markdownTable(headers: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

const verdict = (ok: boolean | null): string => (ok === null ? '—' : ok ? 'met' : '**missed**');

export function targetsTable(r: BenchResults): string {
  const o = r.options;
  const embedded = r.embedded ? cycleMedians(r.embedded) : null;
  const mosquitto = isPhase(r.mosquitto) ? cycleMedians(r.mosquitto) : null;
  const floor = r.floor ? cycleMedians(r.floor) : null;
  const rows: string[][] = [];
  if (r.storm) {
    rows.push([
      'cars connected at once',
      '10,000',
      `${fmt(r.storm.connected)} of ${fmt(r.storm.cars)}`,
      verdict(r.storm.connected >= 10_000),
    ]);
    rows.push([
      `connect storm for ${fmt(r.storm.cars)} cars`,
      '≤ 30 s (10,000 cars)',
      `${fmt(r.storm.ms / 1000, 1)} s`,
      verdict(r.storm.connected === r.storm.cars && r.storm.ms <= 30_000 * (r.storm.cars / 10_000)),
    ]);
  }
  if (r.memory) {
    rows.push([
      'broker memory per connected car (RSS; heap)',
      '≤ 64 KiB RSS',
      `${fmt(r.memory.rssPerCarKiB, 1)} KiB; ${fmt(r.memory.heapPerCarKiB, 1)} KiB`,
      verdict(r.memory.rssPerCarKiB <= 64),
    ]);
  }
  if (embedded) {
    rows.push([
      `unlock+lock cycles/s, C = ${o.couriers}, N = ${fmt(o.cars)}`,
      '≥ 1,000 (C = 64, N = 10,000)',
      `${fmt(embedded.cyclesPerSecond)} (errors: ${embedded.errors})`,
      verdict(embedded.cyclesPerSecond >= 1_000 && embedded.errors === 0),
    ]);
    rows.push([
      'p99 of one unlock round trip at that load',
      '≤ 25 ms',
      `${fmt(embedded.unlockP99, 1)} ms`,
      verdict(embedded.unlockP99 <= 25),
    ]);
  }
  if (embedded && floor) {
    const alone = ratio(embedded.aloneUnlockP50, floor.aloneUnlockP50);
    if (Number.isFinite(alone)) {
      rows.push([
        'phase 3 latency over the floor, one courier alone (unlock p50)',
        '≤ 3×',
        `${fmt(alone, 1)}× (${fmt(embedded.aloneUnlockP50, 1)} vs ${fmt(floor.aloneUnlockP50, 1)} ms; p99 ${fmt(ratio(embedded.aloneUnlockP99, floor.aloneUnlockP99), 1)}×)`,
        verdict(alone <= 3),
      ]);
    }
    const loaded = ratio(embedded.unlockP50, floor.unlockP50);
    rows.push([
      `phase 3 latency over the floor, C = ${o.couriers} (unlock p50)`,
      '≤ 3×',
      `${fmt(loaded, 1)}× (p99 ${fmt(ratio(embedded.unlockP99, floor.unlockP99), 1)}×)`,
      verdict(loaded <= 3),
    ]);
  }
  if (embedded && mosquitto) {
    const x = ratio(embedded.cyclesPerSecond, mosquitto.cyclesPerSecond);
    rows.push(['embedded broker vs Mosquitto, phase 3 throughput', '≥ 1×', `${fmt(x, 2)}×`, verdict(x >= 1)]);
  }
  if (r.identities) {
    rows.push([
      'identities issued per second (to disk; in memory)',
      '≥ 1,000',
      `${fmt(r.identities.disk.perSecond)}; ${fmt(r.identities.memory.perSecond)}`,
      verdict(r.identities.disk.perSecond >= 1_000),
    ]);
  }
  return markdownTable(['figure', 'target', 'measured (median)', 'verdict'], rows);
}

export function cycleTable(r: BenchResults): string | null {
  const columns: Array<[string, CycleMedians]> = [];
  if (r.embedded) columns.push(['3 embedded broker', cycleMedians(r.embedded)]);
  if (isPhase(r.mosquitto)) columns.push(['4 Mosquitto', cycleMedians(r.mosquitto)]);
  if (r.floor) columns.push(['5 floor', cycleMedians(r.floor)]);
  if (columns.length === 0) return null;
  const floor = r.floor ? cycleMedians(r.floor) : null;
  const row = (name: string, pick: (m: CycleMedians) => string): string[] => [
    name,
    ...columns.map(([, m]) => pick(m)),
  ];
  const phases = [r.embedded, r.mosquitto, r.floor].filter(isPhase);
  const cpuNames = [...new Set(columns.flatMap(([, m]) => Object.keys(m.cpu)))];
  const rows = [
    row('cars connected', (_m) => ''),
    row('cycles/s', (m) => fmt(m.cyclesPerSecond)),
    row(
      'unlock p50 / p99 / max, ms',
      (m) => `${fmt(m.unlockP50, 1)} / ${fmt(m.unlockP99, 1)} / ${fmt(m.unlockMax, 1)}`,
    ),
    row('lock p50 / p99, ms', (m) => `${fmt(m.lockP50, 1)} / ${fmt(m.lockP99, 1)}`),
    row('cycle p50 / p99, ms', (m) => `${fmt(m.cycleP50, 1)} / ${fmt(m.cycleP99, 1)}`),
    row(
      'unlock p50 / p99 of one courier alone, ms',
      (m) => `${fmt(m.aloneUnlockP50, 1)} / ${fmt(m.aloneUnlockP99, 1)}`,
    ),
    row('errors (all repeats)', (m) => `${m.errors} of ${fmt(m.completed + m.errors)}`),
    ...cpuNames.map((name) => row(`CPU per cycle, ${name}, µs`, (m) => fmt(m.cpu[name]))),
  ];
  phases.forEach((p, i) => {
    const cpu = Object.entries(p.storm.cpuPerCarUs ?? {})
      .map(([name, us]) => `${name} ${fmt(us / 1000, 1)} ms`)
      .join(', ');
    (rows[0] as string[])[i + 1] =
      `${fmt(p.storm.connected)} in ${fmt(p.storm.ms / 1000, 1)} s${cpu ? ` (CPU per car: ${cpu})` : ''}`;
  });
  if (floor) {
    rows.push(
      row('throughput over the floor', (m) => `${fmt(ratio(m.cyclesPerSecond, floor.cyclesPerSecond), 2)}×`),
    );
    rows.push(row('unlock p50 over the floor', (m) => `${fmt(ratio(m.unlockP50, floor.unlockP50), 1)}×`));
  }
  return markdownTable(['phases 3-5', ...columns.map(([name]) => name)], rows);
}

export function otherFigures(r: BenchResults): string {
  const rows: string[][] = [];
  if (r.identities) {
    rows.push([
      '1',
      'identities in memory (key pair + certificate)',
      `${fmt(r.identities.memory.perSecond)}/s (${fmt(r.identities.memory.count)} in ${fmt(r.identities.memory.ms / 1000, 1)} s)`,
    ]);
    rows.push([
      '1',
      'identities to disk (issueFleet, files 0600)',
      `${fmt(r.identities.disk.perSecond)}/s (${fmt(r.identities.disk.count)} in ${fmt(r.identities.disk.ms / 1000, 1)} s)`,
    ]);
  }
  if (r.storm) {
    rows.push([
      '2',
      'connect storm',
      `${fmt(r.storm.connected)} cars in ${fmt(r.storm.ms / 1000, 1)} s (${fmt((r.storm.connected * 1000) / r.storm.ms)}/s)`,
    ]);
    for (const [name, us] of Object.entries(r.storm.cpuPerCarUs ?? {})) {
      rows.push(['2', `connect storm, CPU per car: ${name}`, `${fmt(us)} µs`]);
    }
  }
  if (r.memory) {
    const mib = (b: number): string => `${fmt(b / 1048576, 1)} MiB`;
    rows.push([
      '2',
      'broker process RSS, idle, before → after',
      `${mib(r.memory.before.rss)} → ${mib(r.memory.after.rss)}`,
    ]);
    rows.push([
      '2',
      'broker process heap used, before → after',
      `${mib(r.memory.before.heapUsed)} → ${mib(r.memory.after.heapUsed)}`,
    ]);
    rows.push([
      '2',
      'simulator process RSS per car (not the broker)',
      `${fmt(r.memory.simulatorRssPerCarKiB, 1)} KiB`,
    ]);
  }
  if (r.tokens && r.tokens.length > 0) {
    const m = (pick: (t: TokenRun) => number): number => median((r.tokens ?? []).map(pick));
    const mint = m((t) => t.mint.ours);
    const verify = m((t) => t.verify.ours);
    rows.push([
      '6',
      'mint: protocols/token.ts / jose SignJWT / bare Ed25519 sign',
      `${fmt(mint)} / ${fmt(m((t) => t.mint.jose))} / ${fmt(m((t) => t.mint.ed25519))} ops/s (ours ${fmt(
        ratio(
          mint,
          m((t) => t.mint.jose),
        ),
        2,
      )}× jose)`,
    ]);
    rows.push([
      '6',
      'verify: protocols/token.ts / jose jwtVerify / bare Ed25519 verify',
      `${fmt(verify)} / ${fmt(m((t) => t.verify.jose))} / ${fmt(m((t) => t.verify.ed25519))} ops/s (ours ${fmt(
        ratio(
          verify,
          m((t) => t.verify.jose),
        ),
        2,
      )}× jose)`,
    ]);
  }
  return markdownTable(['phase', 'figure', 'measured (median)'], rows);
}

export function profileTable(r: BenchResults): string | null {
  if (!r.profile) return null;
  return markdownTable(
    ['#', 'function (self time)', 'self ms', 'share'],
    r.profile.top.map((f, i) => [
      String(i + 1),
      `\`${f.name}\``,
      fmt(f.selfMs),
      `${fmt(f.share * 100, 1)} %`,
    ]),
  );
}

export function renderReport(r: BenchResults): string {
  const m = r.machine;
  const parts = [
    `Command: \`${r.command}\``,
    `Machine: ${m.cpus} × ${m.cpuModel}, ${fmt(m.memoryGiB)} GiB, Node ${m.node}, ${m.platform}; load average ${fmt(m.load.start, 1)} at the start, ${fmt(m.load.end, 1)} at the end. Medians of ${r.options.repeat} repeat(s).`,
    '',
    targetsTable(r),
  ];
  const cycles = cycleTable(r);
  if (cycles) parts.push('', cycles);
  parts.push('', otherFigures(r));
  const profile = profileTable(r);
  if (profile)
    parts.push(
      '',
      `CPU profile of the gateway process during phase 3 (top five by self time, ${r.profile?.file}):`,
      '',
      profile,
    );
  if (r.notes.length > 0) parts.push('', ...r.notes.map((n) => `- ${n}`));
  return `${parts.join('\n')}\n`;
}
