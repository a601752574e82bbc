import { URLExt } from '@jupyterlab/coreutils';

import { ServerConnection } from '@jupyterlab/services';

import { ILuminaEvent, ISnapshot, ITemplateInfo } from './model';

/**
 * Call the server extension (REST under /lumina/ on the Jupyter server; authenticated by the server's
 * token or cookie, with the XSRF header, like every JupyterLab request).
 *
 * @param endPoint API REST end point for the extension
 * @param serverSettings The server settings to use for the request
 * @param init Initial values for the request
 * @returns The response body interpreted as JSON
 */
export async function requestAPI<T>(
  endPoint: string,
  serverSettings: ServerConnection.ISettings,
  init: RequestInit = {}
): Promise<T> {
  const requestUrl = URLExt.join(serverSettings.baseUrl, 'lumina', endPoint);

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      requestUrl,
      init,
      serverSettings
    );
  } catch (error) {
    throw new ServerConnection.NetworkError(error as any);
  }

  let data: any = await response.text();

  if (data.length > 0) {
    try {
      data = JSON.parse(data);
    } catch (error) {
      console.log('Not a JSON response body.', response);
    }
  }

  if (!response.ok) {
    const message =
      data && data.message
        ? data.hint
          ? `${data.message} (fix: ${data.hint})`
          : data.message
        : String(data);
    throw new ServerConnection.ResponseError(response, message);
  }

  return data;
}

/** What the sidebar needs from the server (an interface, so tests can pass a fake). */
export interface ILuminaClient {
  snapshot(options?: { window?: string; events?: number }): Promise<ISnapshot>;
  events(options: {
    type?: string;
    limit?: number;
    since?: string;
  }): Promise<ILuminaEvent[]>;
  templates(): Promise<ITemplateInfo[]>;
  createFromTemplate(
    name: string,
    directory?: string
  ): Promise<{ path: string; name: string }>;
  connect(options: IEventStreamOptions): IEventStream;
}

export interface IEventStreamOptions {
  /** Glob over event types. */
  type?: string;
  /** How many stored events to receive first. */
  backlog?: number;
  onEvents: (events: ILuminaEvent[], backlog: boolean) => void;
  onState?: (state: StreamState, detail?: string) => void;
}

export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'closed';

export interface IEventStream {
  readonly state: StreamState;
  /** Change the type glob (the server filters from now on). */
  setFilter(type: string): void;
  dispose(): void;
}

function query(params: Record<string, string | number | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== '') {
      parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
    }
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/** The Lumina REST API and live WebSocket of this Jupyter server. */
export class LuminaClient implements ILuminaClient {
  constructor(serverSettings?: ServerConnection.ISettings) {
    this.serverSettings = serverSettings ?? ServerConnection.makeSettings();
  }

  readonly serverSettings: ServerConnection.ISettings;

  snapshot(
    options: { window?: string; events?: number } = {}
  ): Promise<ISnapshot> {
    return requestAPI<ISnapshot>(
      'snapshot' + query({ window: options.window, events: options.events }),
      this.serverSettings
    );
  }

  events(options: {
    type?: string;
    limit?: number;
    since?: string;
  }): Promise<ILuminaEvent[]> {
    return requestAPI<ILuminaEvent[]>(
      'events' +
        query({
          type: options.type === '*' ? undefined : options.type,
          limit: options.limit,
          since: options.since
        }),
      this.serverSettings
    );
  }

  async templates(): Promise<ITemplateInfo[]> {
    const data = await requestAPI<{ templates: ITemplateInfo[] }>(
      'templates',
      this.serverSettings
    );
    return data.templates;
  }

  createFromTemplate(
    name: string,
    directory = ''
  ): Promise<{ path: string; name: string }> {
    return requestAPI<{ path: string; name: string }>(
      `templates/${encodeURIComponent(name)}`,
      this.serverSettings,
      { method: 'POST', body: JSON.stringify({ directory }) }
    );
  }

  /** The URL of the live event WebSocket (with the token when the server settings say to append it). */
  eventsUrl(type?: string, backlog?: number): string {
    const s = this.serverSettings;
    const params: Record<string, string | number | undefined> = {
      type: type && type !== '*' ? type : undefined,
      backlog
    };
    if (s.appendToken && s.token) {
      params.token = s.token;
    }
    return URLExt.join(s.wsUrl, 'lumina', 'events', 'ws') + query(params);
  }

  connect(options: IEventStreamOptions): IEventStream {
    return new EventStream(this, options);
  }
}

/** A WebSocket to /lumina/events/ws that reconnects with back-off (1 s doubling to 30 s). */
class EventStream implements IEventStream {
  constructor(client: LuminaClient, options: IEventStreamOptions) {
    this._client = client;
    this._options = options;
    this._type = options.type ?? '*';
    this._open();
  }

  get state(): StreamState {
    return this._state;
  }

  setFilter(type: string): void {
    this._type = type || '*';
    if (this._ws && this._ws.readyState === 1) {
      this._ws.send(
        JSON.stringify({ type: this._type === '*' ? null : this._type })
      );
    }
  }

  dispose(): void {
    this._disposed = true;
    if (this._timer) {
      clearTimeout(this._timer);
    }
    if (this._ws) {
      this._ws.onclose = null;
      this._ws.close();
      this._ws = null;
    }
    this._setState('closed');
  }

  private _open(): void {
    if (this._disposed) {
      return;
    }
    this._setState(this._attempts ? 'reconnecting' : 'connecting');
    const WS = this._client.serverSettings.WebSocket;
    const backlog = this._attempts ? 50 : (this._options.backlog ?? 0);
    const ws = new WS(this._client.eventsUrl(this._type, backlog));
    this._ws = ws;
    ws.onmessage = (msg: MessageEvent) => {
      let data: any;
      try {
        data = JSON.parse(msg.data);
      } catch {
        return;
      }
      if (data.kind === 'hello') {
        this._attempts = 0;
        this._setState('live', data.shared ? '' : 'not shared');
      } else if (data.kind === 'events') {
        this._options.onEvents(data.events ?? [], !!data.backlog);
      } else if (data.kind === 'error') {
        this._setState(
          'reconnecting',
          data.hint ? `${data.message} (fix: ${data.hint})` : data.message
        );
      }
    };
    ws.onclose = () => {
      this._ws = null;
      if (this._disposed) {
        return;
      }
      this._attempts += 1;
      this._setState('reconnecting');
      const delay = Math.min(
        30000,
        1000 * 2 ** Math.min(this._attempts - 1, 5)
      );
      this._timer = setTimeout(() => this._open(), delay);
    };
  }

  private _setState(state: StreamState, detail?: string): void {
    this._state = state;
    this._options.onState?.(state, detail);
  }

  private _client: LuminaClient;
  private _options: IEventStreamOptions;
  private _type: string;
  private _ws: WebSocket | null = null;
  private _attempts = 0;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _disposed = false;
  private _state: StreamState = 'connecting';
}
