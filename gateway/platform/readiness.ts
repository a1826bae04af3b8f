// Owns readiness: named checks run together, each bounded in time; ready only when every one passes.

/** Resolves null when the dependency is usable, else a short reason an operator can act on. */
export type ReadinessCheck = () => Promise<string | null> | string | null;

export interface ReadinessReport {
  ready: boolean;
  /** Every check by name: 'ok' or why it failed. */
  checks: Record<string, string>;
  /** The names of the failing checks. */
  missing: string[];
}

export const READINESS_CHECK_TIMEOUT_MS = 2_000;

async function run(check: ReadinessCheck, timeoutMs: number): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${timeoutMs} ms`), timeoutMs);
  });
  try {
    return await Promise.race([Promise.resolve().then(check), late]);
  } catch (err) {
    return (err as Error).message || String(err);
  } finally {
    clearTimeout(timer);
  }
}

export function createReadiness(
  checks: Record<string, ReadinessCheck>,
  timeoutMs = READINESS_CHECK_TIMEOUT_MS,
): () => Promise<ReadinessReport> {
  return async () => {
    const names = Object.keys(checks);
    const results = await Promise.all(names.map((name) => run(checks[name] as ReadinessCheck, timeoutMs)));
    const report: ReadinessReport = { ready: true, checks: {}, missing: [] };
    names.forEach((name, i) => {
      const problem = results[i] ?? null;
      report.checks[name] = problem ?? 'ok';
      if (problem !== null) {
        report.ready = false;
        report.missing.push(name);
      }
    });
    return report;
  };
}
