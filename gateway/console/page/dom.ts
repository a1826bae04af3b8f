// Owns building DOM nodes and formatting values for the page: text always goes in as text, never as HTML.

type Child = Node | string | null | undefined | false;

export interface Props {
  class?: string;
  text?: string;
  title?: string;
  data?: Record<string, string>;
  attrs?: Record<string, string>;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.text !== undefined) node.textContent = props.text;
  if (props.title) node.title = props.title;
  for (const [k, v] of Object.entries(props.data ?? {})) node.dataset[k] = v;
  for (const [k, v] of Object.entries(props.attrs ?? {})) node.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node as T;
}

const pad = (n: number): string => String(n).padStart(2, '0');

/** Local wall-clock time with seconds: a timeline is read in seconds. */
export function clock(iso: string | null): string {
  if (iso === null) return '—';
  const d = new Date(iso);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export const position = (p: { lat: number; lon: number } | null): string =>
  p === null ? '—' : `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}`;

export const yesNo = (v: boolean | null, yes: string, no: string): string =>
  v === null ? '—' : v ? yes : no;
