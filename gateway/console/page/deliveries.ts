// Owns the deliveries panel: each delivery with its timeline as it grows, refusals shown with their codes.
import type { ConsoleDelivery } from '../schemas.ts';
import { clock, el } from './dom.ts';

const MAX_SHOWN = 100;

export interface DeliveriesView {
  /** Shows exactly these, newest first, built off the page and put in at once. */
  replace(deliveries: Iterable<ConsoleDelivery>): void;
  /** Draws these deliveries again (or for the first time); the newest stays on top. */
  update(deliveries: Iterable<ConsoleDelivery>): void;
}

function card(d: ConsoleDelivery): HTMLElement {
  const window = `${clock(d.window.start)}–${clock(d.window.end)}`;
  const place = d.location ? `${d.location.label} (${d.location.radiusM} m)` : d.vin;
  return el(
    'article',
    { class: 'delivery', data: { delivery: d.id, status: d.status } },
    el(
      'header',
      {},
      el('strong', { class: 'dlv-id', text: d.id }),
      el('span', { class: `badge status-${d.status}`, text: d.blocked ? `${d.status} · blocked` : d.status }),
      el('span', {
        class: 'dlv-meta',
        text: `${d.vin} · ${place} · driver ${d.driverId}${d.carrierId ? ` · ${d.carrierId}` : ''} · ${window}`,
      }),
    ),
    el('ol', { class: 'timeline' }),
  );
}

function fillTimeline(list: HTMLElement, d: ConsoleDelivery): void {
  // Rows are only ever added (a timeline is append-only): add the ones after the last shown.
  const shown = Number(list.dataset.lastSeq ?? '0');
  for (const e of d.timeline) {
    if (e.seq <= shown) continue;
    list.append(
      el(
        'li',
        { data: { kind: e.kind, outcome: e.outcome, seq: String(e.seq) } },
        el('time', { text: clock(e.at), attrs: { datetime: e.at } }),
        el('span', { class: `outcome ${e.outcome}`, text: e.outcome }),
        el('span', { class: 'kind', text: e.kind }),
        e.code ? el('code', { class: 'refusal', text: e.code }) : null,
      ),
    );
  }
  list.dataset.lastSeq = String(d.timeline.at(-1)?.seq ?? shown);
}

export function createDeliveries(root: HTMLElement): DeliveriesView {
  const cards = new Map<string, HTMLElement>();
  const empty = el('p', { class: 'empty', text: 'No deliveries yet.' });
  root.append(empty);

  const build = (d: ConsoleDelivery): HTMLElement => {
    const node = card(d);
    node.dataset.created = d.createdAt;
    fillTimeline(node.querySelector('ol') as HTMLElement, d);
    cards.set(d.id, node);
    return node;
  };

  return {
    replace(deliveries) {
      for (const n of cards.values()) n.remove();
      cards.clear();
      const newest = [...deliveries]
        .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0))
        .slice(0, MAX_SHOWN);
      const fragment = document.createDocumentFragment();
      for (const d of newest) fragment.append(build(d));
      root.append(fragment);
      empty.hidden = cards.size > 0;
    },
    update(deliveries) {
      for (const d of deliveries) {
        let node = cards.get(d.id);
        if (!node) {
          node = build(d);
          // Newest first, by creation time: a delivery that changes keeps its place.
          const before = [...root.querySelectorAll<HTMLElement>('article.delivery')].find(
            (n) => n !== node && (n.dataset.created ?? '') < d.createdAt,
          );
          root.insertBefore(node, before ?? null);
        } else {
          const fresh = card(d);
          node.replaceChild(
            fresh.querySelector('header') as HTMLElement,
            node.querySelector('header') as HTMLElement,
          );
          node.dataset.status = d.status;
          fillTimeline(node.querySelector('ol') as HTMLElement, d);
        }
      }
      // Only the newest are kept on the page.
      const nodes = [...root.querySelectorAll<HTMLElement>('article.delivery')];
      for (const n of nodes.slice(MAX_SHOWN)) {
        cards.delete(n.dataset.delivery ?? '');
        n.remove();
      }
      empty.hidden = cards.size > 0;
    },
  };
}
