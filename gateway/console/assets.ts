// Owns serving the console page: its HTML, CSS and TypeScript modules from page/, the TypeScript stripped of its
// types by esbuild (already in the tree for tsx) on first request, without bundling; headers that allow nothing else.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { transform } from 'esbuild';
import { ApiError } from '../errors.ts';

export const PAGE_DIR = join(import.meta.dirname, 'page');

export interface Asset {
  type: string;
  body: string;
}

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  css: 'text/css; charset=utf-8',
  svg: 'image/svg+xml',
  // A module's imports name the .ts files themselves ('./map.ts'), which are served as JavaScript.
  ts: 'text/javascript; charset=utf-8',
};

/** The page loads only its own files and talks only to this origin; nothing inline, nothing framed. */
export const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
} as const;

/** Reads page/ once; an asset is served only if its name is listed here, so no request names a path. */
export function createAssets(dir: string = PAGE_DIR) {
  const names = new Set(readdirSync(dir).filter((n) => /^[a-z][a-z0-9-]*\.(html|css|svg|ts)$/.test(n)));
  const built = new Map<string, Promise<Asset>>();

  async function build(name: string): Promise<Asset> {
    const ext = name.slice(name.lastIndexOf('.') + 1);
    const source = readFileSync(join(dir, name), 'utf8');
    if (ext !== 'ts') return { type: TYPES[ext] as string, body: source };
    const out = await transform(source, { loader: 'ts', format: 'esm', target: 'es2022', sourcefile: name });
    return { type: TYPES.ts as string, body: out.code };
  }

  const assets = {
    names: (): string[] => [...names].sort(),
    /** Builds every file now, so that the first visitor does not wait for esbuild; failures wait for a request. */
    warm(): Promise<void> {
      return Promise.all([...names].map((n) => assets.get(n).catch(() => undefined))).then(() => undefined);
    },
    get(name: string): Promise<Asset> {
      if (!names.has(name))
        return Promise.reject(new ApiError('NOT_FOUND', { detail: `no console file ${name}` }));
      let asset = built.get(name);
      if (!asset) {
        asset = build(name);
        // A failed build is not remembered, so the next request tries again.
        asset.catch(() => built.delete(name));
        built.set(name, asset);
      }
      return asset;
    },
  };
  return assets;
}

export type Assets = ReturnType<typeof createAssets>;
