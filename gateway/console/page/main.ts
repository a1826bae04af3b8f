// Owns the console page's start: sign-in with an API key, then the feed, the lists and the panels, wired together.
// The key stays in this tab's sessionStorage (gone with the tab) and only ever travels in the Authorization header.
import type { ConsoleDelivery, ConsoleMe, ConsoleWebhookDelivery } from '../schemas.ts';
import { ApiRefusal, createApi } from './api.ts';
import { createCarList } from './car-list.ts';
import { createCarPanel } from './car-panel.ts';
import { createDeliveries } from './deliveries.ts';
import { byId } from './dom.ts';
import { type FeedStatus, openFeed } from './feed.ts';
import { createMap } from './map.ts';
import { type Changes, createState, noChanges } from './state.ts';
import { createWebhooks } from './webhooks.ts';

const KEY_ITEM = 'curbside.console.key';

function who(me: ConsoleMe): string {
  if (me.ownerId) return `owner ${me.ownerId}`;
  if (me.carrierId) return `carrier ${me.carrierId}`;
  return me.scopes.includes('admin') ? 'admin' : 'unbound';
}

function showSignIn(message = ''): void {
  byId('app').hidden = true;
  byId('signin').hidden = false;
  byId('signin-error').textContent = message;
  byId<HTMLInputElement>('signin-key').focus();
}

async function start(key: string): Promise<void> {
  const api = createApi(key);
  // The stream opens at once, beside the question of who this key is: what arrives before the page is set up
  // waits here, and is handled in order afterwards.
  const early: Array<[string, unknown]> = [];
  let lastStatus: [FeedStatus, string | undefined] = ['connecting', undefined];
  let onFrame = (type: string, data: unknown): void => {
    early.push([type, data]);
  };
  let onStatus = (s: FeedStatus, code?: string): void => {
    lastStatus = [s, code];
  };
  const feed = openFeed(key, { frame: (t, d) => onFrame(t, d), status: (s, c) => onStatus(s, c) });
  let me: ConsoleMe;
  try {
    me = await api.me();
  } catch (err) {
    feed.close();
    sessionStorage.removeItem(KEY_ITEM);
    showSignIn(err instanceof ApiRefusal ? `${err.code}: ${err.message}` : String(err));
    return;
  }
  sessionStorage.setItem(KEY_ITEM, key);
  byId('signin').hidden = true;
  byId('app').hidden = false;
  byId('who').textContent = `${who(me)} · ${me.keyId}`;
  byId('map-panel').hidden = !me.sees.vehicles;
  byId('cars-panel').hidden = !me.sees.vehicles;
  byId('car-detail').hidden = !me.sees.vehicles;
  byId('deliveries-panel').hidden = !me.sees.deliveries;
  byId('webhooks-panel').hidden = !me.sees.webhooks;

  const state = createState();
  let selected: string | null = null;
  const map = createMap(byId<HTMLCanvasElement>('map'), {
    vehicles: () => state.vehicles.values(),
    count: () => state.vehicles.size,
    locations: () => state.locations(),
    selected: () => selected,
  });
  const list = createCarList(byId('car-list'), {
    vehicle: (vin) => state.vehicles.get(vin),
    selected: () => selected,
  });
  const panel = createCarPanel(byId('car-detail-body'), { api, canDrive: me.sees.simulator });
  const deliveries = createDeliveries(byId('deliveries'));
  const webhooks = createWebhooks(byId<HTMLTableSectionElement>('webhook-rows'));
  const filter = byId<HTMLInputElement>('car-filter');

  const visibleOrder = (): readonly string[] => {
    const q = filter.value.trim().toLowerCase();
    if (!q) return state.order();
    return state.order().filter((vin) => {
      const v = state.vehicles.get(vin);
      return (
        v !== undefined &&
        `${v.vin} ${v.make} ${v.model} ${v.ownerId} ${v.provider}`.toLowerCase().includes(q)
      );
    });
  };
  const counts = (): void => {
    byId('car-count').textContent = `${state.vehicles.size}`;
  };
  const select = (vin: string): void => {
    selected = vin;
    panel.show(state.vehicles.get(vin) ?? null);
    list.refresh();
    map.draw();
  };
  panel.show(null);
  map.onSelect(select);
  list.onSelect(select);
  filter.addEventListener('input', () => list.show(visibleOrder()));

  const render = (changes: Changes): void => {
    if (changes.vehicles) {
      if (changes.vehicleSet) list.show(visibleOrder());
      else list.refresh();
      map.draw();
      counts();
      if (selected && changes.vins.has(selected)) panel.show(state.vehicles.get(selected) ?? null);
    }
    if (changes.locations && !changes.vehicles) map.draw();
    if (changes.deliveries.size > 0)
      deliveries.update([...changes.deliveries].flatMap((id) => state.deliveries.get(id) ?? []));
    if (changes.webhookDeliveries.size > 0)
      webhooks.update([...changes.webhookDeliveries].flatMap((id) => state.webhookDeliveries.get(id) ?? []));
  };

  // Frames that arrive while the lists load are kept and applied on top of them, oldest first.
  let loading: Array<[string, unknown]> | null = null;
  let loads = 0;

  async function load(): Promise<void> {
    loading = [];
    let lists: [
      Awaited<ReturnType<typeof api.vehicles>> | null,
      { deliveries: ConsoleDelivery[] } | null,
      { webhookDeliveries: ConsoleWebhookDelivery[] } | null,
    ];
    try {
      lists = await Promise.all([
        me.sees.vehicles ? api.vehicles() : null,
        me.sees.deliveries ? api.deliveries() : null,
        me.sees.webhooks ? api.webhookDeliveries() : null,
      ]);
    } catch (err) {
      // Read again shortly; frames meanwhile are dropped, the next read covers them.
      loading = null;
      setStatus('reconnecting', err instanceof ApiRefusal ? err.code : 'LOAD_FAILED');
      setTimeout(() => void load(), 2_000);
      return;
    }
    const [v, d, w] = lists;
    if (loads === 0) performance.mark('console:lists-loaded');
    state.replaceVehicles(v?.vehicles ?? [], v?.locations ?? []);
    state.replaceDeliveries(d?.deliveries ?? []);
    state.replaceWebhookDeliveries(w?.webhookDeliveries ?? []);
    const buffered = loading;
    loading = null;
    const changes = noChanges();
    for (const [type, data] of buffered) state.apply(type, data, changes);
    list.show(visibleOrder());
    map.draw();
    counts();
    deliveries.replace(state.deliveries.values());
    webhooks.replace(state.webhookDeliveries.values());
    if (selected) panel.show(state.vehicles.get(selected) ?? null);
    if (loads++ === 0) {
      // After the frame that draws the map and the list: what the bench measures as the first render.
      requestAnimationFrame(() => {
        performance.mark('console:first-render');
        document.body.dataset.ready = 'true';
      });
    }
  }

  const feedStatus = byId('feed-status');
  const setStatus = (s: FeedStatus, code?: string): void => {
    feedStatus.dataset.state = s;
    feedStatus.textContent = code ? `${s} (${code})` : s;
  };
  onFrame = (type, data) => {
    if (type === 'ready') {
      // Subscribed: whatever changes from now on arrives on the stream, so the lists read now miss nothing.
      void load();
      return;
    }
    if (loading) {
      loading.push([type, data]);
      return;
    }
    const changes = noChanges();
    state.apply(type, data, changes);
    render(changes);
  };
  onStatus = (s, code) => {
    setStatus(s, code);
    if (s === 'ended' && code === 'UNAUTHENTICATED') {
      feed.close();
      sessionStorage.removeItem(KEY_ITEM);
      showSignIn('The key was revoked or is unknown: UNAUTHENTICATED');
    }
  };
  onStatus(...lastStatus);
  for (const [type, data] of early.splice(0)) onFrame(type, data);

  byId('signout').addEventListener(
    'click',
    () => {
      feed.close();
      sessionStorage.removeItem(KEY_ITEM);
      window.location.reload();
    },
    { once: true },
  );
}

byId('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = byId<HTMLInputElement>('signin-key');
  const key = input.value.trim();
  input.value = '';
  void start(key);
});

const saved = sessionStorage.getItem(KEY_ITEM);
if (saved) void start(saved);
else showSignIn();
