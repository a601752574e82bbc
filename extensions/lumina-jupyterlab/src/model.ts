/**
 * Pure logic of the sidebar: the shapes the server answers with, the live event buffer, and formatting.
 * No DOM and no JupyterLab imports here, so it is unit-tested directly.
 */

/** One stored event, as the server sends it (see lumina_lab.status.event_record). */
export interface ILuminaEvent {
  id: string;
  type: string;
  schema_version?: number;
  ts: string;
  source: string;
  trace_id?: string | null;
  span_id?: string | null;
  payload: Record<string, unknown>;
  summary: string;
}

export interface IBreakerInfo {
  source: string;
  state: string;
  previous?: string;
  failure_rate?: number | null;
  since?: string | null;
}

export interface IProviderInfo {
  id: string;
  model: string | null;
  configured: boolean;
  capabilities?: string[];
  breaker: string;
  breakers: IBreakerInfo[];
  health: 'healthy' | 'degraded' | 'down' | 'idle' | string;
  calls: number;
  failures: number;
  error_rate: number | null;
  p50_latency_ms: number | null;
  p95_latency_ms: number | null;
  ttft_ms: number | null;
  cost_usd: number | null;
  last_call: string | null;
}

export interface IBudgetRow {
  budget: string;
  bucket?: string;
  key?: string;
  period?: string;
  spent_usd?: number | null;
  limit_usd?: number | null;
  remaining_usd?: number | null;
  ratio?: number | null;
  soft_ratio?: number;
  state?: 'ok' | 'warning' | 'exceeded' | string;
  error?: string;
}

export interface IStatus {
  version: string;
  time: string;
  home: string;
  home_display?: string;
  profile: string;
  store: {
    kind: string;
    path: string | null;
    shared: boolean;
    hint: string | null;
  };
  bus: {
    kind: string;
    queue_size: number;
    overflow: string;
    flush_interval_s: number;
  };
  routing: { strategy: string };
  events: {
    total: number;
    last_ts: string | null;
    window: string;
    in_window: number;
  };
  sources: { source: string; events: number; last_ts: string | null }[];
  providers: number;
  budgets: number;
  server?: {
    clients: number;
    poll_interval_s: number;
    polls: number;
    pushed: number;
  };
}

export interface ISnapshot {
  status: IStatus;
  providers: { window: string; providers: IProviderInfo[] };
  budgets: {
    budgets: IBudgetRow[];
    spend: {
      today_usd: number | null;
      month_usd: number | null;
      by_project_today: { project: string; spent_usd: number | null }[];
    };
    alerts_today: Record<string, number>;
  };
  memory: {
    backend: string;
    collections: {
      name: string;
      dim: number | null;
      writes: number;
      searches: number;
    }[];
    error: string | null;
  };
  policy: {
    live: number | null;
    versions: {
      version: number;
      message: string;
      live: boolean;
      created: string | null;
    }[];
    error: string | null;
    decisions: Record<string, number | string>;
  };
  events: ILuminaEvent[];
  elapsed_ms?: number;
}

export interface ITemplateInfo {
  name: string;
  title: string;
  description: string;
}

/** Which sidebar panels show (settings: panels). */
export interface IPanels {
  status: boolean;
  providers: boolean;
  budgets: boolean;
  events: boolean;
}

export const DEFAULT_PANELS: IPanels = {
  status: true,
  providers: true,
  budgets: true,
  events: true
};

/**
 * A glob over event types, as the server understands it (`*`, `?`, `[...]`), as a RegExp.
 * An empty glob matches everything.
 */
export function globToRegExp(glob: string | null | undefined): RegExp {
  const g = (glob ?? '').trim();
  if (g === '' || g === '*') {
    return /^.*$/s;
  }
  let out = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i];
    if (c === '*') {
      out += '.*';
    } else if (c === '?') {
      out += '.';
    } else if (c === '[') {
      const end = g.indexOf(']', i + 1);
      if (end === -1) {
        out += '\\[';
      } else {
        let body = g.slice(i + 1, end);
        if (body.startsWith('!')) {
          body = '^' + body.slice(1);
        }
        out += '[' + body.replace(/\\/g, '\\\\') + ']';
        i = end;
      }
    } else {
      out += c.replace(/[.+^${}()|\\]/g, '\\$&');
    }
  }
  return new RegExp('^' + out + '$', 's');
}

/**
 * The live event feed: newest first, bounded, without duplicates (the backlog and the live feed may overlap),
 * filtered by a type glob.
 */
export class EventBuffer {
  constructor(limit = 200, glob = '*') {
    this._limit = Math.max(1, limit);
    this.setFilter(glob);
  }

  get limit(): number {
    return this._limit;
  }

  set limit(value: number) {
    this._limit = Math.max(1, value);
    this._trim();
  }

  get filter(): string {
    return this._glob;
  }

  /** Change the type glob; events already held that do not match are dropped. */
  setFilter(glob: string): void {
    this._glob = glob.trim() || '*';
    this._re = globToRegExp(this._glob);
    this._events = this._events.filter(e => this._re.test(e.type));
    this._ids = new Set(this._events.map(e => e.id));
  }

  matches(type: string): boolean {
    return this._re.test(type);
  }

  /** Add events (any order); return the ones that were new and matched. */
  add(events: ILuminaEvent[]): ILuminaEvent[] {
    const fresh: ILuminaEvent[] = [];
    for (const e of events) {
      if (!e || !e.id || this._ids.has(e.id) || !this._re.test(e.type)) {
        continue;
      }
      this._ids.add(e.id);
      fresh.push(e);
    }
    if (fresh.length) {
      this._events = this._events.concat(fresh);
      this._events.sort(compareNewestFirst);
      this._trim();
    }
    return fresh;
  }

  clear(): void {
    this._events = [];
    this._ids.clear();
  }

  /** The events, newest first. */
  get events(): ReadonlyArray<ILuminaEvent> {
    return this._events;
  }

  get size(): number {
    return this._events.length;
  }

  private _trim(): void {
    if (this._events.length > this._limit) {
      for (const e of this._events.slice(this._limit)) {
        this._ids.delete(e.id);
      }
      this._events = this._events.slice(0, this._limit);
    }
  }

  private _limit: number;
  private _glob = '*';
  private _re: RegExp = /^.*$/s;
  private _events: ILuminaEvent[] = [];
  private _ids = new Set<string>();
}

/** Newest first by time, then by id (UUIDv7 ids grow with time). */
export function compareNewestFirst(a: ILuminaEvent, b: ILuminaEvent): number {
  if (a.ts !== b.ts) {
    return a.ts < b.ts ? 1 : -1;
  }
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** `$12.35`, `$0.90`, `$0.0123`, `$0.0021` (two significant digits below a cent); `–` when unknown. */
export function formatUsd(value: number | null | undefined): string {
  if (value === null || value === undefined || !isFinite(value)) {
    return '–';
  }
  const abs = Math.abs(value);
  const sign = value < 0 ? '-' : '';
  if (abs === 0) {
    return '$0';
  }
  if (abs >= 100) {
    return `${sign}$${abs.toFixed(0)}`;
  }
  if (abs >= 1) {
    return `${sign}$${abs.toFixed(2)}`;
  }
  if (abs >= 0.01) {
    // up to 4 decimals, at least 2: $0.90, $0.0123
    return `${sign}$${abs.toFixed(4).replace(/(\.\d\d\d*?)0+$/, '$1')}`;
  }
  if (abs < 0.000001) {
    return `${sign}<$0.000001`;
  }
  const digits = Math.min(8, 1 - Math.floor(Math.log10(abs)));
  return `${sign}$${abs.toFixed(digits)}`;
}

/** `340 ms`, `1.2 s`; `–` when unknown. */
export function formatMs(value: number | null | undefined): string {
  if (value === null || value === undefined || !isFinite(value)) {
    return '–';
  }
  if (value >= 1000) {
    return `${(value / 1000).toFixed(1)} s`;
  }
  return `${Math.round(value)} ms`;
}

/** `12%`; `–` when unknown. */
export function formatPercent(value: number | null | undefined): string {
  if (value === null || value === undefined || !isFinite(value)) {
    return '–';
  }
  const pct = value * 100;
  return `${pct < 10 && pct > 0 ? pct.toFixed(1) : Math.round(pct)}%`;
}

/** Wall-clock time of an ISO timestamp, `HH:MM:SS` in the browser's zone. */
export function formatClock(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const d = new Date(iso);
  if (isNaN(d.getTime())) {
    return '';
  }
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `5 s ago`, `3 min ago`, `2 h ago`, `4 d ago`. */
export function formatAgo(
  iso: string | null | undefined,
  now: number = Date.now()
): string {
  if (!iso) {
    return 'never';
  }
  const t = new Date(iso).getTime();
  if (isNaN(t)) {
    return '';
  }
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) {
    return `${s} s ago`;
  }
  if (s < 3600) {
    return `${Math.round(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.round(s / 3600)} h ago`;
  }
  return `${Math.round(s / 86400)} d ago`;
}

/** The width (0..100) of a budget bar and its CSS state. */
export function budgetBar(row: IBudgetRow): { percent: number; state: string } {
  const ratio =
    row.ratio ?? (row.limit_usd ? (row.spent_usd ?? 0) / row.limit_usd : 0);
  const percent = Math.max(
    0,
    Math.min(100, (isFinite(ratio) ? ratio : 1) * 100)
  );
  return { percent, state: row.state ?? 'ok' };
}

/** Event types whose arrival should refresh provider health or spend right away. */
export function triggersRefresh(type: string): boolean {
  return (
    type === 'provider.breaker.changed' ||
    type === 'provider.call.failed' ||
    type.startsWith('budget.') ||
    type === 'policy.version.published'
  );
}

/** Order providers for display: down, degraded, healthy, idle; then by calls. */
export function sortProviders(providers: IProviderInfo[]): IProviderInfo[] {
  const rank: Record<string, number> = {
    down: 0,
    degraded: 1,
    healthy: 2,
    idle: 3
  };
  return [...providers].sort(
    (a, b) =>
      (rank[a.health] ?? 4) - (rank[b.health] ?? 4) ||
      b.calls - a.calls ||
      a.id.localeCompare(b.id)
  );
}

/** The `%lumina` snippet settings default to. */
export const DEFAULT_SNIPPETS: { label: string; code: string }[] = [
  { label: 'status', code: '%load_ext lumina_lab\n%lumina status' },
  { label: 'providers', code: '%load_ext lumina_lab\n%lumina providers' },
  {
    label: 'ask',
    code: '%load_ext lumina_lab\n%%lumina ask\nSummarise this notebook in three bullet points.'
  },
  {
    label: 'lab',
    code: "from lumina_lab import Lab\n\nlab = Lab()\nlab.query(type='*', since='15m').tail()"
  }
];

/** Insert ``snippet`` into ``source`` (a cell's text): appended on a new line, or alone in an empty cell. */
export function withSnippet(source: string, snippet: string): string {
  if (source.trim() === '') {
    return snippet;
  }
  return source.replace(/\s*$/, '') + '\n' + snippet;
}

/** A dashboard URL: the settings' base URL joined with a view's path (absolute URLs win). */
export function dashboardUrl(base: string, path = ''): string {
  const p = (path ?? '').trim();
  if (/^https?:\/\//i.test(p)) {
    return p;
  }
  const b = (base ?? '').trim() || 'http://localhost:5006/';
  if (!p) {
    return b;
  }
  if (p.startsWith('?') || p.startsWith('#')) {
    return b + p;
  }
  return b.replace(/\/+$/, '') + '/' + p.replace(/^\/+/, '');
}
