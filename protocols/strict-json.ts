// Owns strict JSON decoding for signed data: no duplicate member names (RFC 7515 §5.2, RFC 8725 §3.1), bounded nesting.

export class StrictJsonError extends Error {
  readonly code: 'JSON_SYNTAX' | 'JSON_DUPLICATE_KEY' | 'JSON_TOO_DEEP';
  constructor(code: StrictJsonError['code'], message: string) {
    super(message);
    this.name = 'StrictJsonError';
    this.code = code;
  }
}

/**
 * Parses JSON, refusing duplicate member names and nesting deeper than maxDepth.
 * The scan runs before JSON.parse so a hostile document costs one linear pass and no allocation per level.
 */
export function parseStrictJson(text: string, maxDepth = 4): unknown {
  const keyStack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (i >= text.length) throw new StrictJsonError('JSON_SYNTAX', 'unterminated string');
      const keys = keyStack[keyStack.length - 1];
      if (expectKey && keys) {
        // Decode escapes so "a" and "\u0061" count as the same name.
        let name: string;
        try {
          name = JSON.parse(text.slice(start, i + 1)) as string;
        } catch {
          throw new StrictJsonError('JSON_SYNTAX', 'bad string');
        }
        if (keys.has(name)) throw new StrictJsonError('JSON_DUPLICATE_KEY', `duplicate member "${name}"`);
        keys.add(name);
        expectKey = false;
      }
    } else if (ch === '{' || ch === '[') {
      if (keyStack.length >= maxDepth)
        throw new StrictJsonError('JSON_TOO_DEEP', `nesting above ${maxDepth}`);
      keyStack.push(ch === '{' ? new Set() : null);
      expectKey = ch === '{';
    } else if (ch === '}' || ch === ']') {
      keyStack.pop();
      expectKey = false;
    } else if (ch === ',') {
      expectKey = keyStack[keyStack.length - 1] !== null && keyStack.length > 0;
    }
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new StrictJsonError('JSON_SYNTAX', 'not JSON');
  }
}
