// A VM's console WebSockets (/ws/vms/{id}/console and /vnc): `auth`, then `subscribe` {force, cols, rows};
// then binary frames carry the raw bytes both ways and text frames JSON control messages
// ({type: 'resize', cols, rows} from us; {type: 'error', error} from the gateway before it closes).

import { socketUrl } from './socket';

export type ConsoleKind = 'console' | 'vnc';

/** What a close code means to the person at the console. */
export const CLOSE_MEANING: Record<number, string> = {
  4401: 'Your login has expired: log in again.',
  4403: 'Not allowed: your role may not open this console.',
  4409: 'Another session holds this console, or took it over.',
  4429: 'Too many WebSockets are open from this browser.',
};

export function closeReason(code: number, error: string | null): string {
  if (error) return error;
  if (CLOSE_MEANING[code]) return CLOSE_MEANING[code];
  if (code === 1006) return 'The console cannot be reached: this gateway may not serve consoles yet, or it is down.';
  return `The console closed (${code}).`;
}

export interface ConsoleHandlers {
  /** The session is subscribed: bytes flow from now on. */
  onReady: (socket: WebSocket) => void;
  onData?: (bytes: Uint8Array) => void;
  /** The session ended, with a sentence that says why. */
  onEnd: (reason: string, code: number) => void;
}

export interface ConsoleOptions {
  vm: { name: string; namespace: string };
  kind: ConsoleKind;
  token: string;
  force: boolean;
  cols?: number;
  rows?: number;
  /** WebSocket to use (the page's; tests pass a stand-in). */
  open?: (url: string) => WebSocket;
}

export class ConsoleSession {
  private error: string | null = null;
  private ready = false;
  readonly socket: WebSocket;

  constructor(options: ConsoleOptions, handlers: ConsoleHandlers) {
    const path = `/ws/vms/${encodeURIComponent(options.vm.name)}/${options.kind}`;
    const url = socketUrl(path, { namespace: options.vm.namespace });
    const socket = (options.open ?? ((u) => new WebSocket(u)))(url);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: 'auth', payload: { token: options.token } }));
    socket.onmessage = (event: MessageEvent) => {
      if (typeof event.data !== 'string') {
        handlers.onData?.(new Uint8Array(event.data as ArrayBuffer));
        return;
      }
      let message: { type?: string; status?: string; error?: { message?: string } };
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type === 'auth' && message.status === 'ok' && !this.ready) {
        this.ready = true;
        const payload = { force: options.force, cols: options.cols ?? 80, rows: options.rows ?? 24 };
        socket.send(JSON.stringify({ type: 'subscribe', payload }));
        handlers.onReady(socket);
      } else if (message.type === 'error') {
        this.error = message.error?.message ?? 'the console failed';
      }
    };
    socket.onclose = (event: CloseEvent) => handlers.onEnd(closeReason(event.code, this.error), event.code);
  }

  send(bytes: string | Uint8Array): void {
    if (this.socket.readyState !== 1) return;
    this.socket.send(typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes);
  }

  resize(cols: number, rows: number): void {
    if (this.socket.readyState === 1) this.socket.send(JSON.stringify({ type: 'resize', cols, rows }));
  }

  close(): void {
    this.socket.close(1000);
  }
}
