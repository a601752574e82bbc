import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  DEFAULT_PANELS,
  EventBuffer,
  IBudgetRow,
  ILuminaEvent,
  IPanels,
  IProviderInfo,
  ISnapshot,
  budgetBar,
  formatAgo,
  formatClock,
  formatMs,
  formatPercent,
  formatUsd,
  sortProviders,
  triggersRefresh
} from './model';
import { IEventStream, ILuminaClient, StreamState } from './request';

/** Settings the sidebar reads (from the settings registry; see schema/plugin.json). */
export interface ISidebarOptions {
  refreshSeconds: number;
  eventLimit: number;
  eventTypes: string;
  backlog: number;
  window: string;
  panels: IPanels;
}

export const DEFAULT_SIDEBAR_OPTIONS: ISidebarOptions = {
  refreshSeconds: 5,
  eventLimit: 200,
  eventTypes: '*',
  backlog: 50,
  window: '15m',
  panels: DEFAULT_PANELS
};

/** Build an element; text goes through textContent, never HTML (event payloads are data). */
function h(
  tag: string,
  attrs: Record<string, string> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') {
      el.className = v;
    } else {
      el.setAttribute(k, v);
    }
  }
  for (const child of children) {
    if (child === null || child === undefined) {
      continue;
    }
    el.appendChild(
      typeof child === 'string' ? document.createTextNode(child) : child
    );
  }
  return el;
}

/**
 * The Lumina sidebar: connection and store status, provider health, spend against budget, live events.
 *
 * Provider health and spend are refreshed every `refreshSeconds` while the sidebar is visible, and at once
 * when an event that changes them arrives (breaker changes, failures, budget alerts); events arrive over
 * the server's WebSocket from every process on the machine.
 */
export class LuminaSidebar extends Widget {
  constructor(
    client: ILuminaClient,
    options: Partial<ISidebarOptions> = {},
    actions: { openDashboard?: () => void } = {}
  ) {
    super();
    this.id = 'lumina-sidebar';
    this.addClass('jp-Lumina-sidebar');
    this.title.caption = 'Lumina';
    this._client = client;
    this._actions = actions;
    this._options = { ...DEFAULT_SIDEBAR_OPTIONS, ...options };
    this._buffer = new EventBuffer(
      this._options.eventLimit,
      this._options.eventTypes
    );
    this._build();
    this._applyPanels();
  }

  /** The live event buffer (newest first). */
  get buffer(): EventBuffer {
    return this._buffer;
  }

  get streamState(): StreamState {
    return this._streamState;
  }

  get lastSnapshot(): ISnapshot | null {
    return this._snapshot;
  }

  /** Events received since the sidebar started (after deduplication). */
  get received(): number {
    return this._received;
  }

  /** Apply new settings (refresh rate, limits, filter, panels). */
  configure(options: Partial<ISidebarOptions>): void {
    const old = this._options;
    this._options = { ...old, ...options };
    this._buffer.limit = this._options.eventLimit;
    if (this._options.eventTypes !== old.eventTypes) {
      this._setFilter(this._options.eventTypes);
    }
    this._applyPanels();
    this._renderEvents();
    if (this._timer !== null) {
      this._startTimer();
    }
  }

  /** Connect the live feed and start refreshing (idempotent). */
  start(): void {
    if (!this._stream) {
      this._stream = this._client.connect({
        type: this._buffer.filter,
        backlog: this._options.backlog,
        onEvents: events => this.addEvents(events),
        onState: (state, detail) => this._onStreamState(state, detail)
      });
    }
    if (this._timer === null) {
      this._startTimer();
    }
    void this.refresh();
  }

  /** Stop refreshing and close the feed. */
  stop(): void {
    if (this._timer !== null) {
      clearInterval(this._timer);
      this._timer = null;
    }
    this._stream?.dispose();
    this._stream = null;
  }

  /** Fetch a snapshot and render it; errors show in the status line. */
  async refresh(): Promise<void> {
    if (this._refreshing) {
      this._refreshAgain = true;
      return;
    }
    this._refreshing = true;
    try {
      const snap = await this._client.snapshot({
        window: this._options.window,
        events: this._buffer.size ? 0 : this._options.backlog
      });
      this._snapshot = snap;
      this._error = null;
      if (snap.events?.length) {
        this.addEvents(snap.events);
      }
      this._render();
    } catch (error) {
      this._error = (error as Error).message ?? String(error);
      this._renderStatus();
    } finally {
      this._refreshing = false;
      if (this._refreshAgain) {
        this._refreshAgain = false;
        void this.refresh();
      }
    }
  }

  /** Add events from the feed (deduplicated); refresh health and spend if some change them. */
  addEvents(events: ILuminaEvent[]): void {
    const fresh = this._buffer.add(events);
    if (!fresh.length) {
      return;
    }
    this._received += fresh.length;
    this._renderEvents(new Set(fresh.map(e => e.id)));
    if (fresh.some(e => triggersRefresh(e.type))) {
      this._scheduleRefresh();
    }
  }

  dispose(): void {
    this.stop();
    if (this._soon !== null) {
      clearTimeout(this._soon);
    }
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.start();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this.start();
    }
  }

  protected onBeforeHide(msg: Message): void {
    super.onBeforeHide(msg);
    // keep the feed (events keep arriving); stop the periodic refresh
    if (this._timer !== null) {
      clearInterval(this._timer);
      this._timer = null;
    }
  }

  // ------------------------------------------------------------------ building
  private _build(): void {
    const header = h(
      'div',
      { class: 'jp-Lumina-header' },
      h('span', { class: 'jp-Lumina-logo' }, 'Lumina'),
      (this._conn = h(
        'span',
        { class: 'jp-Lumina-conn', 'data-state': 'connecting' },
        'connecting'
      )),
      (this._refreshButton = h(
        'button',
        { class: 'jp-Lumina-button', title: 'Refresh now' },
        'Refresh'
      )),
      (this._dashboardButton = h(
        'button',
        { class: 'jp-Lumina-button', title: 'Open the live dashboard' },
        'Dashboard'
      ))
    );
    this._refreshButton.addEventListener('click', () => void this.refresh());
    this._dashboardButton.addEventListener('click', () =>
      this._actions.openDashboard?.()
    );
    if (!this._actions.openDashboard) {
      this._dashboardButton.style.display = 'none';
    }

    this._statusSection = h(
      'section',
      { class: 'jp-Lumina-section jp-Lumina-status' },
      (this._statusLine = h('div', { class: 'jp-Lumina-statusline' }, '…'))
    );
    this._providersBody = h('div', { class: 'jp-Lumina-providers' });
    this._providersTitle = h('h3', {}, 'Providers');
    this._providersSection = h(
      'section',
      { class: 'jp-Lumina-section' },
      this._providersTitle,
      this._providersBody
    );
    this._budgetsBody = h('div', { class: 'jp-Lumina-budgets' });
    this._budgetsSection = h(
      'section',
      { class: 'jp-Lumina-section' },
      h('h3', {}, 'Spend'),
      this._budgetsBody
    );
    this._filterInput = h('input', {
      class: 'jp-Lumina-filter',
      type: 'text',
      placeholder: 'type filter, e.g. provider.*',
      title: 'Glob over event types',
      value: this._buffer.filter === '*' ? '' : this._buffer.filter
    }) as HTMLInputElement;
    this._filterInput.addEventListener('change', () =>
      this._setFilter(this._filterInput.value)
    );
    this._pauseButton = h(
      'button',
      { class: 'jp-Lumina-button', title: 'Pause or resume the feed' },
      'Pause'
    );
    this._pauseButton.addEventListener('click', () => {
      this._paused = !this._paused;
      this._pauseButton.textContent = this._paused ? 'Resume' : 'Pause';
      if (!this._paused) {
        this._renderEvents();
      }
    });
    this._eventsCount = h('span', { class: 'jp-Lumina-count' }, '');
    this._eventsList = h('ol', { class: 'jp-Lumina-events' });
    this._eventsSection = h(
      'section',
      { class: 'jp-Lumina-section jp-Lumina-feed' },
      h('h3', {}, 'Live events ', this._eventsCount),
      h(
        'div',
        { class: 'jp-Lumina-feedbar' },
        this._filterInput,
        this._pauseButton
      ),
      this._eventsList
    );
    for (const el of [
      header,
      this._statusSection,
      this._providersSection,
      this._budgetsSection,
      this._eventsSection
    ]) {
      this.node.appendChild(el);
    }
  }

  private _applyPanels(): void {
    const p = { ...DEFAULT_PANELS, ...this._options.panels };
    this._statusSection.hidden = !p.status;
    this._providersSection.hidden = !p.providers;
    this._budgetsSection.hidden = !p.budgets;
    this._eventsSection.hidden = !p.events;
  }

  private _startTimer(): void {
    if (this._timer !== null) {
      clearInterval(this._timer);
    }
    const ms = Math.max(1, this._options.refreshSeconds) * 1000;
    this._timer = setInterval(() => void this.refresh(), ms);
  }

  private _scheduleRefresh(): void {
    if (this._soon !== null) {
      return;
    }
    this._soon = setTimeout(() => {
      this._soon = null;
      void this.refresh();
    }, 750);
  }

  private _setFilter(glob: string): void {
    const g = glob.trim() || '*';
    this._buffer.setFilter(g);
    this._filterInput.value = g === '*' ? '' : g;
    this._stream?.setFilter(g);
    this._renderEvents();
    // refill from the store with the new filter
    this._client
      .events({ type: g, limit: Math.min(this._options.eventLimit, 200) })
      .then(events => this.addEvents(events))
      .catch(() => undefined);
  }

  private _onStreamState(state: StreamState, detail?: string): void {
    this._streamState = state;
    this._streamDetail = detail ?? '';
    this._renderConn();
  }

  // ------------------------------------------------------------------ rendering
  private _render(): void {
    this._renderConn();
    this._renderStatus();
    this._renderProviders();
    this._renderBudgets();
  }

  private _renderConn(): void {
    const labels: Record<StreamState, string> = {
      connecting: 'connecting',
      live: 'live',
      reconnecting: 'reconnecting',
      closed: 'offline'
    };
    this._conn.dataset.state = this._streamState;
    this._conn.textContent = labels[this._streamState];
    this._conn.title =
      this._streamDetail || `live event feed: ${this._streamState}`;
  }

  private _renderStatus(): void {
    const line = this._statusLine;
    line.replaceChildren();
    if (this._error) {
      line.appendChild(
        h(
          'div',
          { class: 'jp-Lumina-error' },
          `Cannot read Lumina: ${this._error}`
        )
      );
    }
    const snap = this._snapshot;
    if (!snap) {
      if (!this._error) {
        line.appendChild(document.createTextNode('Loading…'));
      }
      return;
    }
    const s = snap.status;
    const procs = s.sources.length;
    const mem = snap.memory;
    const policy = snap.policy;
    const kv = (key: string, value: string, title = '') =>
      h(
        'div',
        { class: 'jp-Lumina-kv', title: title || value },
        h('span', { class: 'jp-Lumina-k' }, key),
        h('span', { class: 'jp-Lumina-v' }, value)
      );
    line.appendChild(
      kv('home', s.home_display ?? s.home, s.store.path ?? s.home)
    );
    line.appendChild(
      kv(
        'activity',
        `${s.events.in_window} events / ${s.events.window} · ${procs} process${procs === 1 ? '' : 'es'}`,
        `${s.events.total} events stored; processes active in the last ${s.events.window}:\n` +
          s.sources.map(x => `${x.source}: ${x.events}`).join('\n')
      )
    );
    line.appendChild(
      kv(
        'memory',
        `${mem.collections.length} collection${mem.collections.length === 1 ? '' : 's'} (${mem.backend})`,
        mem.collections.map(c => c.name).join(', ') || (mem.error ?? '')
      )
    );
    line.appendChild(
      kv(
        'policy',
        policy.live
          ? `v${policy.live} live · ${plural(policy.versions.length, 'version')}`
          : 'none published',
        policy.error ?? ''
      )
    );
    if (s.store.hint) {
      line.appendChild(h('div', { class: 'jp-Lumina-warning' }, s.store.hint));
    }
  }

  private _renderProviders(): void {
    const snap = this._snapshot;
    if (!snap) {
      return;
    }
    this._providersTitle.textContent = `Providers · ${snap.providers.window}`;
    const body = this._providersBody;
    body.replaceChildren();
    const providers = sortProviders(snap.providers.providers);
    if (!providers.length) {
      body.appendChild(
        h('div', { class: 'jp-Lumina-empty' }, 'No providers configured.')
      );
      return;
    }
    const list = h('ul', { class: 'jp-Lumina-providerlist' });
    for (const p of providers) {
      list.appendChild(this._providerRow(p));
    }
    body.appendChild(list);
  }

  private _providerRow(p: IProviderInfo): HTMLElement {
    const breakerTitle = p.breakers.length
      ? p.breakers
          .map(b => `${b.source}: ${b.state} since ${formatAgo(b.since)}`)
          .join('\n')
      : 'breaker closed in every process';
    const attempts = p.calls + p.failures;
    const stats = attempts
      ? [
          `${attempts} call${attempts === 1 ? '' : 's'}`,
          `${formatPercent(p.error_rate)} err`,
          `p95 ${formatMs(p.p95_latency_ms)}`,
          formatUsd(p.cost_usd)
        ].join(' · ')
      : 'no calls';
    return h(
      'li',
      {
        class: 'jp-Lumina-provider',
        'data-provider': p.id,
        'data-health': p.health,
        title: `${p.id} (${p.model ?? 'not configured here'}): ${p.health}\n${breakerTitle}`
      },
      h('span', { class: `jp-Lumina-dot jp-Lumina-health-${p.health}` }),
      h('span', { class: 'jp-Lumina-name' }, p.id),
      p.breaker !== 'closed'
        ? h(
            'span',
            { class: `jp-Lumina-badge jp-Lumina-breaker-${p.breaker}` },
            p.breaker.replace('_', '-')
          )
        : h('span', { class: `jp-Lumina-healthlabel` }, p.health),
      h('span', { class: 'jp-Lumina-stats' }, stats)
    );
  }

  private _renderBudgets(): void {
    const snap = this._snapshot;
    if (!snap) {
      return;
    }
    const body = this._budgetsBody;
    body.replaceChildren();
    const spend = snap.budgets.spend;
    body.appendChild(
      h(
        'div',
        { class: 'jp-Lumina-spend' },
        h(
          'div',
          {},
          h('div', { class: 'jp-Lumina-k' }, 'today'),
          h('div', { class: 'jp-Lumina-today' }, formatUsd(spend.today_usd))
        ),
        h(
          'div',
          {},
          h('div', { class: 'jp-Lumina-k' }, 'this month'),
          h('div', { class: 'jp-Lumina-month' }, formatUsd(spend.month_usd))
        )
      )
    );
    const rows = snap.budgets.budgets;
    if (!rows.length) {
      body.appendChild(
        h(
          'div',
          { class: 'jp-Lumina-empty' },
          'No budgets configured ([[budgets]] in lumina.toml).'
        )
      );
    }
    for (const row of rows) {
      body.appendChild(this._budgetRow(row));
    }
    const alerts = snap.budgets.alerts_today;
    const warn =
      (alerts['budget.warning'] ?? 0) + (alerts['budget.exceeded'] ?? 0);
    if (warn) {
      body.appendChild(
        h(
          'div',
          { class: 'jp-Lumina-warning' },
          `${warn} budget alert${warn === 1 ? '' : 's'} today`
        )
      );
    }
  }

  private _budgetRow(row: IBudgetRow): HTMLElement {
    if (row.error) {
      return h(
        'div',
        { class: 'jp-Lumina-error' },
        `${row.budget}: ${row.error}`
      );
    }
    const { percent, state } = budgetBar(row);
    const who = row.key && row.key !== '*' ? ` · ${row.key}` : '';
    const fill = h('div', {
      class: `jp-Lumina-barfill jp-Lumina-budget-${state}`
    });
    fill.style.width = `${percent.toFixed(1)}%`;
    return h(
      'div',
      {
        class: 'jp-Lumina-budget',
        'data-state': state,
        title: `${row.budget}${who}: ${formatUsd(row.spent_usd)} of ${formatUsd(row.limit_usd)} (${state})`
      },
      h(
        'div',
        { class: 'jp-Lumina-budgetlabel' },
        h('span', { class: 'jp-Lumina-budgetname' }, `${row.budget}${who}`),
        h('span', { class: 'jp-Lumina-num' }, `${Math.round(percent)}%`)
      ),
      h('div', { class: 'jp-Lumina-bar' }, fill),
      h(
        'div',
        { class: 'jp-Lumina-budgetamount' },
        `${formatUsd(row.spent_usd)} of ${formatUsd(row.limit_usd)}`
      )
    );
  }

  private _renderEvents(fresh?: Set<string>): void {
    this._eventsCount.textContent = this._buffer.size
      ? `(${this._buffer.size}${this._buffer.filter !== '*' ? ` · ${this._buffer.filter}` : ''})`
      : '';
    if (this._paused && fresh) {
      return;
    }
    const list = this._eventsList;
    list.replaceChildren();
    if (!this._buffer.size) {
      list.appendChild(
        h(
          'li',
          { class: 'jp-Lumina-empty' },
          'Waiting for events from any kernel or process on this machine…'
        )
      );
      return;
    }
    for (const e of this._buffer.events) {
      const item = h(
        'li',
        {
          class:
            'jp-Lumina-event' + (fresh?.has(e.id) ? ' jp-Lumina-fresh' : ''),
          'data-type': e.type,
          'data-id': e.id,
          title: `${e.ts}\n${e.source}\n${JSON.stringify(e.payload, null, 1).slice(0, 2000)}`
        },
        h('span', { class: 'jp-Lumina-time' }, formatClock(e.ts)),
        h('span', { class: `jp-Lumina-type ${typeClass(e.type)}` }, e.type),
        h('span', { class: 'jp-Lumina-summary' }, e.summary)
      );
      list.appendChild(item);
    }
  }

  private _client: ILuminaClient;
  private _actions: { openDashboard?: () => void };
  private _options: ISidebarOptions;
  private _buffer: EventBuffer;
  private _stream: IEventStream | null = null;
  private _streamState: StreamState = 'connecting';
  private _streamDetail = '';
  private _snapshot: ISnapshot | null = null;
  private _error: string | null = null;
  private _timer: ReturnType<typeof setInterval> | null = null;
  private _soon: ReturnType<typeof setTimeout> | null = null;
  private _refreshing = false;
  private _refreshAgain = false;
  private _paused = false;
  private _received = 0;

  private _conn!: HTMLElement;
  private _refreshButton!: HTMLElement;
  private _dashboardButton!: HTMLElement;
  private _statusSection!: HTMLElement;
  private _statusLine!: HTMLElement;
  private _providersSection!: HTMLElement;
  private _providersTitle!: HTMLElement;
  private _providersBody!: HTMLElement;
  private _budgetsSection!: HTMLElement;
  private _budgetsBody!: HTMLElement;
  private _eventsSection!: HTMLElement;
  private _eventsCount!: HTMLElement;
  private _eventsList!: HTMLElement;
  private _filterInput!: HTMLInputElement;
  private _pauseButton!: HTMLElement;
}

/** `1 version`, `2 versions`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** A CSS class per event family (provider, budget, memory, policy, other). */
export function typeClass(type: string): string {
  const family = type.split('.')[0];
  const known = ['provider', 'budget', 'memory', 'policy'];
  if (
    type.endsWith('.failed') ||
    type === 'budget.exceeded' ||
    type === 'policy.denied'
  ) {
    return 'jp-Lumina-type-bad';
  }
  return known.includes(family)
    ? `jp-Lumina-type-${family}`
    : 'jp-Lumina-type-other';
}
