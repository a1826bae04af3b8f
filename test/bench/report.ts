// Owns the bench's results shape and its Markdown rendering: the targets table, per-phase figures, the profile.
import type { CycleRun, OpenLoopRun } from './cycles.ts';
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

export type Skipped = { skipped: string };

export interface CyclePhase {
  label: string;
  storm: StormFigure;
  /** Closed loop: C couriers, each starting its next cycle when its last one ends (saturation). */
  runs: CycleRun[];
  cpu: CpuPerCycle[];
  /** Open loop, after the closed-loop runs: arrivals at half their median cycles/s. */
  openLoop?: OpenLoopRun | Skipped;
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
  /** Phase 3 on SQLite (the store phases 4 and 5 are compared with). */
  embedded?: CyclePhase | Skipped;
  /** Phase 3 on PostgreSQL, in the same run. */
  postgres?: CyclePhase | Skipped;
  mosquitto?: CyclePhase | Skipped;
  floor?: CyclePhase;
  tokens?: TokenRun[];
  /** `phase`: the phase 3 variant profiled. */
  profile?: { file: string; top: HotFunction[]; phase?: string };
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

export const isPhase = (p: CyclePhase | Skipped | undefined): p is CyclePhase =>
  p !== undefined && 'runs' in p;
const isOpenLoop = (o: CyclePhase['openLoop']): o is OpenLoopRun => o !== undefined && 'offered' in o;

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
  const embedded = isPhase(r.embedded) ? cycleMedians(r.embedded) : null;
  const postgres = isPhase(r.postgres) ? cycleMedians(r.postgres) : null;
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
  for (const [store, m] of [
    ['SQLite', embedded],
    ['PostgreSQL', postgres],
  ] as const) {
    if (!m) continue;
    rows.push([
      `unlock+lock cycles/s, C = ${o.couriers}, N = ${fmt(o.cars)}, ${store}`,
      '≥ 1,000 (C = 64, N = 10,000)',
      `${fmt(m.cyclesPerSecond)} (errors: ${m.errors})`,
      verdict(m.cyclesPerSecond >= 1_000 && m.errors === 0),
    ]);
    rows.push([
      `closed-loop unlock p99 at saturation (C = ${o.couriers} couriers), ${store}`,
      '≤ 25 ms',
      `${fmt(m.unlockP99, 1)} ms`,
      verdict(m.unlockP99 <= 25),
    ]);
  }
  for (const [store, p] of [
    ['SQLite', r.embedded],
    ['PostgreSQL', r.postgres],
  ] as const) {
    if (!isPhase(p) || p.openLoop === undefined) continue;
    const open = p.openLoop;
    rows.push(
      isOpenLoop(open)
        ? [
            `open-loop unlock p99 at ${fmt(open.ratePerSecond, 1)} cycles/s (half the closed-loop maximum), ${store}`,
            '≤ 25 ms',
            `${fmt(open.unlock.p99, 1)} ms (p50 ${fmt(open.unlock.p50, 1)} ms; dropped ${fmt(open.dropped + open.exhausted)} of ${fmt(open.offered)}, errors ${open.errors})`,
            verdict(open.unlock.p99 <= 25 && open.dropped === 0 && open.exhausted === 0 && open.errors === 0),
          ]
        : [`open-loop unlock p99, ${store}`, '≤ 25 ms', `not measured: ${open.skipped}`, '—'],
    );
  }
  if (o.stores.includes('postgres') && o.stores.includes('sqlite') && (r.embedded || r.postgres)) {
    const x = embedded && postgres ? ratio(postgres.cyclesPerSecond, embedded.cyclesPerSecond) : Number.NaN;
    const why = [r.embedded, r.postgres].find((p) => p !== undefined && !isPhase(p)) as Skipped | undefined;
    rows.push([
      'cycles/s on PostgreSQL over SQLite, same run',
      '≥ 0.7×',
      why
        ? `not measured: ${why.skipped}`
        : `${fmt(x, 2)}× (${fmt(postgres?.cyclesPerSecond)} vs ${fmt(embedded?.cyclesPerSecond)})`,
      why ? '—' : verdict(x >= 0.7),
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
  const phases: Array<[string, CyclePhase]> = [];
  if (isPhase(r.embedded)) phases.push(['3 embedded broker, SQLite', r.embedded]);
  if (isPhase(r.postgres)) phases.push(['3 embedded broker, PostgreSQL', r.postgres]);
  if (isPhase(r.mosquitto)) phases.push(['4 Mosquitto', r.mosquitto]);
  if (r.floor) phases.push(['5 floor', r.floor]);
  if (phases.length === 0) return null;
  const columns = phases.map(([name, p]): [string, CycleMedians] => [name, cycleMedians(p)]);
  const floor = r.floor ? cycleMedians(r.floor) : null;
  const row = (name: string, pick: (m: CycleMedians) => string): string[] => [
    name,
    ...columns.map(([, m]) => pick(m)),
  ];
  const openRow = (name: string, pick: (o: OpenLoopRun) => string): string[] => [
    name,
    ...phases.map(([, p]) => (isOpenLoop(p.openLoop) ? pick(p.openLoop) : '—')),
  ];
  const cpuNames = [...new Set(columns.flatMap(([, m]) => Object.keys(m.cpu)))];
  const rows = [
    row('cars connected', (_m) => ''),
    row('closed loop (C couriers at saturation): cycles/s', (m) => fmt(m.cyclesPerSecond)),
    row(
      'closed loop: unlock p50 / p99 / max, ms',
      (m) => `${fmt(m.unlockP50, 1)} / ${fmt(m.unlockP99, 1)} / ${fmt(m.unlockMax, 1)}`,
    ),
    row('closed loop: lock p50 / p99, ms', (m) => `${fmt(m.lockP50, 1)} / ${fmt(m.lockP99, 1)}`),
    row('closed loop: cycle p50 / p99, ms', (m) => `${fmt(m.cycleP50, 1)} / ${fmt(m.cycleP99, 1)}`),
    row(
      'unlock p50 / p99 of one courier alone, ms',
      (m) => `${fmt(m.aloneUnlockP50, 1)} / ${fmt(m.aloneUnlockP99, 1)}`,
    ),
    row('errors (all repeats)', (m) => `${m.errors} of ${fmt(m.completed + m.errors)}`),
    ...(phases.some(([, p]) => isOpenLoop(p.openLoop))
      ? [
          openRow(
            'open loop: arrivals, cycles/s (half the closed-loop figure)',
            (o) => `${fmt(o.ratePerSecond, 1)} (completed ${fmt(o.completedPerSecond, 1)})`,
          ),
          openRow(
            'open loop: unlock p50 / p99 / max, ms (from the scheduled arrival)',
            (o) => `${fmt(o.unlock.p50, 1)} / ${fmt(o.unlock.p99, 1)} / ${fmt(o.unlock.max, 1)}`,
          ),
          openRow('open loop: cycle p50 / p99, ms', (o) => `${fmt(o.cycle.p50, 1)} / ${fmt(o.cycle.p99, 1)}`),
          openRow(
            'open loop: arrivals issued / dropped (cap reached) / errors',
            (o) =>
              `${fmt(o.offered)}${o.stoppedByTime ? ' (time bound reached)' : ''} / ${fmt(o.dropped)}${o.exhausted > 0 ? ` (and ${fmt(o.exhausted)} with no delivery left)` : ''} (cap ${o.cap}, at most ${o.maxOutstanding} outstanding) / ${o.errors}`,
          ),
          openRow('open loop: generator lateness p99, ms', (o) => fmt(o.lateness.p99, 1)),
        ]
      : []),
    ...cpuNames.map((name) => row(`CPU per cycle, ${name}, µs`, (m) => fmt(m.cpu[name]))),
  ];
  phases.forEach(([, p], i) => {
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

const phases3 = (r: BenchResults): boolean => isPhase(r.embedded) || isPhase(r.postgres);

export function renderReport(r: BenchResults): string {
  const m = r.machine;
  const parts = [
    `Command: \`${r.command}\``,
    `Machine: ${m.cpus} × ${m.cpuModel}, ${fmt(m.memoryGiB)} GiB, Node ${m.node}, ${m.platform}; load average ${fmt(m.load.start, 1)} at the start, ${fmt(m.load.end, 1)} at the end. Medians of ${r.options.repeat} repeat(s). Simulated cars on ${r.options.simWorkers ?? 1} worker thread(s) (--sim-workers), their state in ${r.options.simState ?? 'memory'} (--sim-state).`,
    '',
    targetsTable(r),
  ];
  const cycles = cycleTable(r);
  if (cycles) parts.push('', cycles);
  parts.push('', otherFigures(r));
  if (phases3(r))
    parts.push(
      '',
      'Closed loop: C couriers, each starting its next cycle when its last one ends, so the gateway runs at saturation and its p99 is mostly queueing. Open loop: cycles arrive at half the closed-loop cycles/s of the same store whatever the completions (arrivals that find C cycles outstanding are dropped and counted); its latencies run from each arrival’s scheduled time.',
    );
  const profile = profileTable(r);
  if (profile)
    parts.push(
      '',
      `CPU profile of the gateway process during ${r.profile?.phase ?? 'phase 3'} (top five by self time, ${r.profile?.file}):`,
      '',
      profile,
    );
  if (r.notes.length > 0) parts.push('', ...r.notes.map((n) => `- ${n}`));
  return `${parts.join('\n')}\n`;
}
