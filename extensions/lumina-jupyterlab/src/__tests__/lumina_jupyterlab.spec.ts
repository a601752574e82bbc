/**
 * Unit tests of the frontend: the pure model, the sidebar widget against a fake server, settings.
 */
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { DEFAULT_SETTINGS, readSettings } from '../settings';
import {
  EventBuffer,
  ILuminaEvent,
  ISnapshot,
  budgetBar,
  dashboardUrl,
  formatAgo,
  formatMs,
  formatPercent,
  formatUsd,
  globToRegExp,
  sortProviders,
  triggersRefresh,
  withSnippet
} from '../model';
import {
  IEventStream,
  IEventStreamOptions,
  ILuminaClient,
  LuminaClient
} from '../request';
import { LuminaSidebar, typeClass } from '../sidebar';

let seq = 0;
function ev(type: string, extra: Partial<ILuminaEvent> = {}): ILuminaEvent {
  seq += 1;
  const ts = new Date(Date.UTC(2026, 0, 1, 12, 0, seq)).toISOString();
  return {
    id: `id-${String(seq).padStart(4, '0')}`,
    type,
    ts,
    source: 'host:1',
    payload: {},
    summary: `${type} #${seq}`,
    ...extra
  };
}

function snapshot(overrides: Partial<ISnapshot> = {}): ISnapshot {
  return {
    status: {
      version: '0.1.0',
      time: '2026-01-01T12:00:00Z',
      home: '/home/ada/.lumina',
      profile: 'dev',
      store: {
        kind: 'file',
        path: '/home/ada/.lumina/events',
        shared: true,
        hint: null
      },
      bus: {
        kind: 'in-process',
        queue_size: 10000,
        overflow: 'block',
        flush_interval_s: 0.2
      },
      routing: { strategy: 'cheapest' },
      events: { total: 120, last_ts: null, window: '5m', in_window: 12 },
      sources: [
        { source: 'host:1', events: 10, last_ts: null },
        { source: 'host:2', events: 2, last_ts: null }
      ],
      providers: 2,
      budgets: 1
    },
    providers: {
      window: '15m',
      providers: [
        {
          id: 'idle-one',
          model: 'm0',
          configured: true,
          breaker: 'closed',
          breakers: [],
          health: 'idle',
          calls: 0,
          failures: 0,
          error_rate: null,
          p50_latency_ms: null,
          p95_latency_ms: null,
          ttft_ms: null,
          cost_usd: 0,
          last_call: null
        },
        {
          id: 'broken',
          model: 'm1',
          configured: true,
          breaker: 'open',
          breakers: [
            { source: 'host:2', state: 'open', since: '2026-01-01T11:59:00Z' }
          ],
          health: 'down',
          calls: 3,
          failures: 5,
          error_rate: 0.625,
          p50_latency_ms: 120,
          p95_latency_ms: 1500,
          ttft_ms: 40,
          cost_usd: 0.0021,
          last_call: null
        }
      ]
    },
    budgets: {
      budgets: [
        {
          budget: 'project=*/day',
          key: 'search',
          spent_usd: 0.9,
          limit_usd: 1,
          ratio: 0.9,
          soft_ratio: 0.8,
          state: 'warning'
        }
      ],
      spend: { today_usd: 0.9, month_usd: 4.5, by_project_today: [] },
      alerts_today: { 'budget.warning': 1 }
    },
    memory: { backend: 'duckdb', collections: [], error: null },
    policy: { live: 2, versions: [], error: null, decisions: {} },
    events: [],
    ...overrides
  };
}

class FakeStream implements IEventStream {
  constructor(public options: IEventStreamOptions) {}
  state: 'live' = 'live';
  filters: string[] = [];
  disposed = false;
  setFilter(type: string): void {
    this.filters.push(type);
  }
  dispose(): void {
    this.disposed = true;
  }
}

class FakeClient implements ILuminaClient {
  snap: ISnapshot = snapshot();
  snapshots = 0;
  streams: FakeStream[] = [];
  fail: Error | null = null;
  eventQueries: { type?: string; limit?: number }[] = [];
  async snapshot(): Promise<ISnapshot> {
    this.snapshots += 1;
    if (this.fail) {
      throw this.fail;
    }
    return this.snap;
  }
  async events(options: {
    type?: string;
    limit?: number;
  }): Promise<ILuminaEvent[]> {
    this.eventQueries.push(options);
    return [];
  }
  async templates() {
    return [];
  }
  async createFromTemplate(name: string) {
    return { path: `${name}.ipynb`, name: `${name}.ipynb` };
  }
  connect(options: IEventStreamOptions): IEventStream {
    const s = new FakeStream(options);
    this.streams.push(s);
    options.onState?.('live');
    return s;
  }
}

const flush = () => new Promise(resolve => setTimeout(resolve, 0));

describe('globToRegExp', () => {
  it('matches like the server (fnmatch)', () => {
    expect(globToRegExp('provider.*').test('provider.call.finished')).toBe(
      true
    );
    expect(globToRegExp('provider.*').test('budget.warning')).toBe(false);
    expect(globToRegExp('*.failed').test('provider.call.failed')).toBe(true);
    expect(globToRegExp('budget.?arning').test('budget.warning')).toBe(true);
    expect(globToRegExp('memory.[sw]*').test('memory.searched')).toBe(true);
    expect(globToRegExp('memory.[!s]*').test('memory.searched')).toBe(false);
    expect(globToRegExp('').test('anything')).toBe(true);
    expect(globToRegExp('a+b(c)').test('a+b(c)')).toBe(true);
  });
});

describe('EventBuffer', () => {
  it('keeps the newest events first, bounded and without duplicates', () => {
    const buf = new EventBuffer(3);
    const a = ev('x.a');
    const b = ev('x.b');
    const c = ev('x.c');
    const d = ev('x.d');
    expect(buf.add([b, a]).length).toBe(2);
    expect(buf.add([a, c]).map(e => e.id)).toEqual([c.id]); // a is a duplicate
    buf.add([d]);
    expect(buf.events.map(e => e.id)).toEqual([d.id, c.id, b.id]);
    expect(buf.add([a]).length).toBe(1); // a fell out of the window: it is new again
  });

  it('filters by a type glob', () => {
    const buf = new EventBuffer(10, 'provider.*');
    buf.add([ev('provider.call.finished'), ev('memory.searched')]);
    expect(buf.events.map(e => e.type)).toEqual(['provider.call.finished']);
    buf.add([ev('budget.warning')]);
    buf.setFilter('*');
    buf.add([ev('budget.warning')]);
    expect(buf.size).toBe(2);
    buf.setFilter('budget.*');
    expect(buf.events.map(e => e.type)).toEqual(['budget.warning']);
    buf.limit = 0; // at least one
    expect(buf.size).toBe(1);
  });
});

describe('formatting', () => {
  it('formats money, time and ratios', () => {
    expect(formatUsd(null)).toBe('–');
    expect(formatUsd(0)).toBe('$0');
    expect(formatUsd(0.0000224)).toBe('$0.000022');
    expect(formatUsd(0.0123)).toBe('$0.0123');
    expect(formatUsd(0.9)).toBe('$0.90');
    expect(formatUsd(0.0021)).toBe('$0.0021');
    expect(formatUsd(0.004557)).toBe('$0.0046');
    expect(formatUsd(-0.5)).toBe('-$0.50');
    expect(formatUsd(1e-9)).toBe('<$0.000001');
    expect(formatUsd(12.345)).toBe('$12.35');
    expect(formatUsd(1234)).toBe('$1234');
    expect(formatMs(340.4)).toBe('340 ms');
    expect(formatMs(1520)).toBe('1.5 s');
    expect(formatMs(undefined)).toBe('–');
    expect(formatPercent(0.625)).toBe('63%');
    expect(formatPercent(0.012)).toBe('1.2%');
    expect(formatPercent(null)).toBe('–');
    const now = Date.UTC(2026, 0, 1, 12, 0, 0);
    expect(formatAgo('2026-01-01T11:59:30Z', now)).toBe('30 s ago');
    expect(formatAgo('2026-01-01T11:00:00Z', now)).toBe('1 h ago');
    expect(formatAgo(null, now)).toBe('never');
  });

  it('sizes budget bars and orders providers worst first', () => {
    expect(budgetBar({ budget: 'b', ratio: 0.5, state: 'ok' })).toEqual({
      percent: 50,
      state: 'ok'
    });
    expect(
      budgetBar({ budget: 'b', ratio: 3, state: 'exceeded' }).percent
    ).toBe(100);
    expect(budgetBar({ budget: 'b', spent_usd: 1, limit_usd: 4 }).percent).toBe(
      25
    );
    const order = sortProviders(snapshot().providers.providers).map(p => p.id);
    expect(order).toEqual(['broken', 'idle-one']);
  });

  it('knows which events refresh health and spend', () => {
    expect(triggersRefresh('provider.breaker.changed')).toBe(true);
    expect(triggersRefresh('budget.exceeded')).toBe(true);
    expect(triggersRefresh('provider.call.finished')).toBe(false);
    expect(typeClass('provider.call.failed')).toBe('jp-Lumina-type-bad');
    expect(typeClass('memory.written')).toBe('jp-Lumina-type-memory');
    expect(typeClass('agent.tool.called')).toBe('jp-Lumina-type-other');
  });

  it('inserts snippets and builds dashboard URLs', () => {
    expect(withSnippet('', '%lumina status')).toBe('%lumina status');
    expect(withSnippet('x = 1\n\n', '%lumina status')).toBe(
      'x = 1\n%lumina status'
    );
    expect(dashboardUrl('http://localhost:5006/', 'memory_explorer')).toBe(
      'http://localhost:5006/memory_explorer'
    );
    expect(dashboardUrl('http://h:1', '')).toBe('http://h:1');
    expect(dashboardUrl('http://localhost:5006/', '?components=memory')).toBe(
      'http://localhost:5006/?components=memory'
    );
    expect(dashboardUrl('http://h:1/', 'https://elsewhere/x')).toBe(
      'https://elsewhere/x'
    );
    expect(dashboardUrl('', '')).toBe('http://localhost:5006/');
  });
});

describe('settings', () => {
  it('fills what the registry leaves out', () => {
    const s = readSettings({
      refreshSeconds: 2,
      panels: { events: false } as any
    });
    expect(s.refreshSeconds).toBe(2);
    expect(s.panels).toEqual({
      status: true,
      providers: true,
      budgets: true,
      events: false
    });
    expect(s.snippets[0].code).toContain('%lumina');
    expect(s.views.routing_lab).toBe(DEFAULT_SETTINGS.views.routing_lab);
  });
});

describe('LuminaSidebar', () => {
  let client: FakeClient;
  let sidebar: LuminaSidebar;

  beforeEach(() => {
    client = new FakeClient();
    sidebar = new LuminaSidebar(client, { backlog: 5, refreshSeconds: 60 });
    Widget.attach(sidebar, document.body);
  });

  afterEach(() => {
    sidebar.dispose();
  });

  it('connects the feed and renders status, providers and spend', async () => {
    sidebar.start();
    await flush();
    expect(client.streams.length).toBe(1);
    expect(client.streams[0].options.backlog).toBe(5);
    const node = sidebar.node;
    expect(node.querySelector('.jp-Lumina-conn')!.textContent).toBe('live');
    expect(node.textContent).toContain('/home/ada/.lumina');
    expect(node.textContent).toContain('12 events / 5m · 2 processes');
    expect(node.textContent).toContain('v2 live');
    const rows = node.querySelectorAll('.jp-Lumina-provider');
    expect(rows.length).toBe(2);
    expect(rows[0].getAttribute('data-provider')).toBe('broken');
    expect(rows[0].getAttribute('data-health')).toBe('down');
    expect(rows[0].querySelector('.jp-Lumina-badge')!.textContent).toBe('open');
    expect(rows[0].querySelector('.jp-Lumina-stats')!.textContent).toBe(
      '8 calls · 63% err · p95 1.5 s · $0.0021'
    );
    expect(rows[1].textContent).toContain('no calls');
    expect(node.querySelector('.jp-Lumina-today')!.textContent).toBe('$0.90');
    const budget = node.querySelector('.jp-Lumina-budget') as HTMLElement;
    expect(budget.dataset.state).toBe('warning');
    expect(
      (budget.querySelector('.jp-Lumina-barfill') as HTMLElement).style.width
    ).toBe('90.0%');
    expect(node.textContent).toContain('1 budget alert today');
  });

  it('shows live events as text, newest first, and refreshes on breaker changes', async () => {
    jest.useFakeTimers();
    try {
      sidebar.start();
      await Promise.resolve();
      const before = client.snapshots;
      const first = ev('provider.call.finished');
      const evil = ev('agent.note', {
        summary: '<img src=x onerror="window.__pwned=1">'
      });
      client.streams[0].options.onEvents([evil, first], false); // any order in, newest first out
      const items = sidebar.node.querySelectorAll('.jp-Lumina-event');
      expect(items.length).toBe(2);
      expect(items[0].getAttribute('data-type')).toBe('agent.note');
      expect(sidebar.node.querySelector('img')).toBeNull(); // payload text is never HTML
      expect(items[0].textContent).toContain('<img src=x');
      expect(client.snapshots).toBe(before); // an ordinary event does not refresh
      client.streams[0].options.onEvents(
        [ev('provider.breaker.changed')],
        false
      );
      jest.advanceTimersByTime(1000);
      expect(client.snapshots).toBe(before + 1);
      expect(sidebar.received).toBe(3);
    } finally {
      jest.useRealTimers();
    }
  });

  it('reports errors from the server in the status line', async () => {
    client.fail = new Error(
      'invalid setting events.store (fix: set it to file)'
    );
    await sidebar.refresh();
    expect(
      sidebar.node.querySelector('.jp-Lumina-error')!.textContent
    ).toContain('invalid setting events.store');
  });

  it('applies settings: filter, panels, limits', async () => {
    sidebar.start();
    await flush();
    sidebar.addEvents([ev('provider.call.finished'), ev('memory.searched')]);
    sidebar.configure({
      eventTypes: 'memory.*',
      panels: { status: true, providers: false, budgets: true, events: true }
    });
    expect(client.streams[0].filters).toEqual(['memory.*']);
    expect(client.eventQueries[0].type).toBe('memory.*');
    expect(sidebar.buffer.events.map(e => e.type)).toEqual(['memory.searched']);
    const sections = sidebar.node.querySelectorAll('section');
    expect((sections[1] as HTMLElement).hidden).toBe(true);
    sidebar.configure({ eventLimit: 1 });
    sidebar.addEvents([ev('memory.written')]);
    expect(sidebar.buffer.size).toBe(1);
  });

  it('stops the feed when disposed', () => {
    sidebar.start();
    const stream = client.streams[0];
    sidebar.dispose();
    expect(stream.disposed).toBe(true);
  });
});

class FakeSocket {
  static made: FakeSocket[] = [];
  constructor(public url: string) {
    FakeSocket.made.push(this);
  }
  readyState = 1;
  sent: string[] = [];
  closed = false;
  onmessage: ((msg: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  send(data: string): void {
    this.sent.push(data);
  }
  close(): void {
    this.closed = true;
  }
  receive(data: unknown): void {
    this.onmessage?.({ data: JSON.stringify(data) });
  }
}

describe('LuminaClient', () => {
  const settings = (extra: Partial<ServerConnection.ISettings> = {}) =>
    ServerConnection.makeSettings({
      baseUrl: 'http://h:8888/base/',
      wsUrl: 'ws://h:8888/base/',
      token: 'tok',
      appendToken: true,
      WebSocket: FakeSocket as any,
      ...extra
    });

  it('builds the WebSocket URL with the filter, backlog and token', () => {
    const c = new LuminaClient(settings());
    expect(c.eventsUrl('provider.*', 5)).toBe(
      'ws://h:8888/base/lumina/events/ws?type=provider.*&backlog=5&token=tok'
    );
    expect(
      new LuminaClient(settings({ appendToken: false })).eventsUrl('*', 0)
    ).toBe('ws://h:8888/base/lumina/events/ws?backlog=0');
  });

  it('turns an error answer into an error that says the fix', async () => {
    const body = JSON.stringify({
      message: 'limit=0 is out of range',
      hint: 'use 1..1000'
    });
    const fetch = jest.fn(async () => ({
      ok: false,
      status: 400,
      statusText: 'Bad Request',
      headers: new Map(),
      text: async () => body
    }));
    const c = new LuminaClient(settings({ fetch: fetch as any }));
    await expect(c.events({ limit: 0 })).rejects.toThrow(
      'limit=0 is out of range (fix: use 1..1000)'
    );
    const request = (fetch.mock.calls[0] as any[])[0];
    expect(request.url).toMatch(
      /^http:\/\/h:8888\/base\/lumina\/events\?limit=0/
    );
  });

  it('streams events, changes filters and reconnects with back-off', () => {
    jest.useFakeTimers();
    try {
      FakeSocket.made = [];
      const got: string[] = [];
      const states: string[] = [];
      const c = new LuminaClient(settings());
      const stream = c.connect({
        type: 'memory.*',
        backlog: 3,
        onEvents: events => got.push(...events.map(e => e.type)),
        onState: state => states.push(state)
      });
      const ws = FakeSocket.made[0];
      expect(ws.url).toContain('type=memory.*&backlog=3');
      ws.receive({ kind: 'hello', shared: true });
      expect(stream.state).toBe('live');
      ws.receive({ kind: 'events', events: [ev('memory.written')] });
      expect(got).toEqual(['memory.written']);
      stream.setFilter('budget.*');
      expect(JSON.parse(ws.sent[0])).toEqual({ type: 'budget.*' });
      ws.onclose?.();
      expect(stream.state).toBe('reconnecting');
      jest.advanceTimersByTime(999);
      expect(FakeSocket.made.length).toBe(1);
      jest.advanceTimersByTime(1);
      expect(FakeSocket.made.length).toBe(2);
      expect(FakeSocket.made[1].url).toContain('type=budget.*'); // the filter survives the reconnect
      stream.dispose();
      expect(FakeSocket.made[1].closed).toBe(true);
      expect(states).toEqual([
        'connecting',
        'live',
        'reconnecting',
        'reconnecting',
        'closed'
      ]);
    } finally {
      jest.useRealTimers();
    }
  });
});
