// Owns reading a V8 .cpuprofile: self time per function (name + url:line), the top N (pure, unit-tested).

/** The parts of V8's CPU profile format (Profiler.Profile) this reads. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber?: number };
    hitCount?: number;
    children?: number[];
  }>;
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface HotFunction {
  /**
   * `name (url:line)`, line 1-based; V8's pseudo-frames keep their name, e.g. `(garbage collector)`. A native
   * function (no url) is named with its nearest JavaScript caller, `run ← executeQuery (…:60)`, since
   * `run` alone could be SQLite or a signature.
   */
  name: string;
  selfMs: number;
  /** Share of the profile's non-idle time, 0..1. */
  share: number;
}

/** Frames that are not work: the event loop waiting, and time V8 could not attribute. */
const NOT_WORK = new Set(['(idle)', '(program)', '(root)']);

const shortUrl = (url: string): string => {
  const cut = url.lastIndexOf('/node_modules/');
  if (cut >= 0) return url.slice(cut + 1);
  const project = url.search(/\/(gateway|simulator|protocols|certs|test)\//);
  if (project >= 0) return url.slice(project + 1);
  return url.replace(/^file:\/\//, '');
};

/** Name of a frame as the report shows it. */
export function frameName(frame: CpuProfile['nodes'][number]['callFrame']): string {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  return `${name} (${shortUrl(frame.url)}:${frame.lineNumber + 1})`;
}

/**
 * Self time per function, summed over every node of the same name and place, largest first. Time comes
 * from samples and timeDeltas when present (exact), else from hitCount × the mean sampling interval.
 */
export function topFunctions(profile: CpuProfile, n = 5): HotFunction[] {
  const selfUs = new Map<number, number>();
  if (profile.samples && profile.timeDeltas && profile.samples.length === profile.timeDeltas.length) {
    // timeDeltas[i] is the time from sample i-1 to sample i; sample i owns the time until the next one
    // (the last one, until endTime), as Chrome's DevTools count it.
    let at = profile.startTime;
    for (let i = 0; i < profile.samples.length; i++) {
      at += profile.timeDeltas[i] as number;
      const id = profile.samples[i] as number;
      const dt = profile.timeDeltas[i + 1] ?? profile.endTime - at;
      selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
    }
  } else {
    const hits = profile.nodes.reduce((sum, node) => sum + (node.hitCount ?? 0), 0);
    const interval = hits > 0 ? (profile.endTime - profile.startTime) / hits : 0;
    for (const node of profile.nodes) selfUs.set(node.id, (node.hitCount ?? 0) * interval);
  }
  const parentOf = new Map<number, CpuProfile['nodes'][number]>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node);
  const nameOf = (node: CpuProfile['nodes'][number]): string => {
    const { callFrame } = node;
    if (callFrame.url || callFrame.functionName.startsWith('(')) return frameName(callFrame);
    let caller = parentOf.get(node.id);
    while (caller && !caller.callFrame.url) caller = parentOf.get(caller.id);
    return caller ? `${frameName(callFrame)} ← ${frameName(caller.callFrame)}` : frameName(callFrame);
  };
  const byName = new Map<string, number>();
  let workUs = 0;
  for (const node of profile.nodes) {
    const us = selfUs.get(node.id) ?? 0;
    if (us === 0 || NOT_WORK.has(node.callFrame.functionName)) continue;
    const name = nameOf(node);
    byName.set(name, (byName.get(name) ?? 0) + us);
    workUs += us;
  }
  return [...byName.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, selfMs: us / 1000, share: workUs > 0 ? us / workUs : 0 }));
}
