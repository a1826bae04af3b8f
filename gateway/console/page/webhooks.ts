// Owns the webhook panel: each delivery of an event to a subscriber, its status, attempts and last error.
import type { ConsoleWebhookDelivery } from '../schemas.ts';
import { clock, el } from './dom.ts';

const MAX_SHOWN = 200;

export interface WebhooksView {
  /** Shows exactly these, newest first. */
  replace(rows: Iterable<ConsoleWebhookDelivery>): void;
  update(rows: Iterable<ConsoleWebhookDelivery>): void;
}

function row(w: ConsoleWebhookDelivery): HTMLTableRowElement {
  const next = w.status === 'pending' ? `next ${clock(w.nextAttemptAt)}` : '';
  return el(
    'tr',
    { data: { outbox: w.id, status: w.status, created: w.createdAt } },
    el('td', { text: clock(w.createdAt) }),
    el('td', { text: w.eventType }),
    el('td', { text: w.origin, title: w.webhookId }),
    el('td', {}, el('span', { class: `badge webhook-${w.status}`, text: w.status })),
    el('td', { class: 'num', text: String(w.attempts) }),
    el('td', { text: w.lastError ?? (w.deliveredAt ? `delivered ${clock(w.deliveredAt)}` : next) }),
  );
}

export function createWebhooks(body: HTMLTableSectionElement): WebhooksView {
  const rows = new Map<string, HTMLTableRowElement>();
  return {
    replace(list) {
      rows.clear();
      const newest = [...list]
        .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0))
        .slice(0, MAX_SHOWN);
      const fragment = document.createDocumentFragment();
      for (const w of newest) {
        const r = row(w);
        rows.set(w.id, r);
        fragment.append(r);
      }
      body.replaceChildren(fragment);
    },
    update(list) {
      for (const w of list) {
        const fresh = row(w);
        const had = rows.get(w.id);
        rows.set(w.id, fresh);
        if (had) {
          had.replaceWith(fresh);
          continue;
        }
        const before = [...body.rows].find((r) => (r.dataset.created ?? '') < w.createdAt);
        body.insertBefore(fresh, before ?? null);
      }
      for (const r of [...body.rows].slice(MAX_SHOWN)) {
        rows.delete(r.dataset.outbox ?? '');
        r.remove();
      }
    },
  };
}
