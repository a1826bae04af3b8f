// Test harness: reads a JUnit XML report strictly enough to fail on one that is not well-formed XML.

export interface JunitTestcase {
  name: string;
  classname: string;
  failure: boolean;
  skipped: boolean;
}

export interface JunitReport {
  tests: number;
  failures: number;
  skipped: number;
  testcases: JunitTestcase[];
}

const ENTITY = /&(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);/g;

function unescapeXml(text: string): string {
  if (/&(?!(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)/.test(text)) throw new Error(`bare & in ${text}`);
  return text.replace(ENTITY, (_m, e: string) =>
    e === 'amp' ? '&' : e === 'lt' ? '<' : e === 'gt' ? '>' : e === 'quot' ? '"' : e === 'apos' ? "'" : '?',
  );
}

interface Element {
  name: string;
  attributes: Record<string, string>;
}

/** Checks nesting, attribute syntax, entities and the prolog; throws on the first problem. */
export function parseXml(xml: string): Array<Element & { close: boolean; selfClosing: boolean }> {
  if (!xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>')) throw new Error('no XML declaration');
  const body = xml.slice(xml.indexOf('?>') + 2);
  const tokens: Array<Element & { close: boolean; selfClosing: boolean }> = [];
  const stack: string[] = [];
  let rest = body;
  let roots = 0;
  while (rest.length > 0) {
    const lt = rest.indexOf('<');
    const text = lt === -1 ? rest : rest.slice(0, lt);
    if (text.includes('>')) throw new Error(`stray > in ${text}`);
    unescapeXml(text);
    if (stack.length === 0 && text.trim() !== '') throw new Error('text outside the root element');
    if (lt === -1) break;
    const gt = rest.indexOf('>', lt);
    if (gt === -1) throw new Error('unterminated tag');
    const tag = rest.slice(lt + 1, gt);
    rest = rest.slice(gt + 1);
    const m = /^(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*="[^"<]*")*)\s*(\/?)$/.exec(tag);
    if (!m) throw new Error(`malformed tag <${tag}>`);
    const [, slash, name, attrs, selfSlash] = m as unknown as [string, string, string, string, string];
    const attributes: Record<string, string> = {};
    for (const a of attrs.matchAll(/([A-Za-z_][\w.-]*)="([^"]*)"/g)) {
      if (a[1] === undefined || a[2] === undefined) continue;
      if (Object.hasOwn(attributes, a[1])) throw new Error(`attribute ${a[1]} twice`);
      attributes[a[1]] = unescapeXml(a[2]);
    }
    if (slash) {
      if (stack.pop() !== name) throw new Error(`</${name}> closes nothing open`);
    } else if (!selfSlash) {
      if (stack.length === 0) roots++;
      stack.push(name);
    } else if (stack.length === 0) {
      roots++;
    }
    tokens.push({ name, attributes, close: slash === '/', selfClosing: selfSlash === '/' });
  }
  if (stack.length > 0) throw new Error(`<${stack.at(-1)}> is never closed`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
  return tokens;
}

/** The counts on <testsuites> and each <testcase> with whether it holds a failure or a skip. */
export function parseJunit(xml: string): JunitReport {
  const tokens = parseXml(xml);
  const root = tokens[0];
  if (root?.name !== 'testsuites') throw new Error('the root is not <testsuites>');
  const testcases: JunitTestcase[] = [];
  let current: JunitTestcase | null = null;
  for (const t of tokens) {
    if (t.name === 'testcase' && !t.close) {
      current = {
        name: t.attributes.name ?? '',
        classname: t.attributes.classname ?? '',
        failure: false,
        skipped: false,
      };
      testcases.push(current);
    } else if (current && t.name === 'failure' && !t.close) current.failure = true;
    else if (current && t.name === 'skipped' && !t.close) current.skipped = true;
  }
  const count = (name: string): number => Number(root.attributes[name]);
  const report = { tests: count('tests'), failures: count('failures'), skipped: count('skipped'), testcases };
  if (report.tests !== testcases.length) throw new Error('tests does not count the testcases');
  if (report.failures !== testcases.filter((t) => t.failure).length) throw new Error('failures miscounted');
  if (report.skipped !== testcases.filter((t) => t.skipped).length) throw new Error('skipped miscounted');
  return report;
}
