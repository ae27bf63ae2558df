// The gateway's WebSockets (/ws/metrics, /ws/logs, and the consoles): the first message authenticates with the
// bearer token, the second subscribes; then the agent's messages flow. A socket closed because its token
// expired (4401) is opened again with a fresh token.

import { Session, session as defaultSession } from './session';

export interface SocketHandlers {
  onMessage: (message: Record<string, unknown>) => void;
  onError?: (text: string) => void;
  onOpen?: () => void;
  /** The socket closed without close(); `retrying` when it is opened again by itself. */
  onClose?: (retrying: boolean) => void;
}

export interface Stream {
  close: () => void;
}

export function socketUrl(path: string, query: Record<string, string>, base: Location | URL = location): string {
  const scheme = base.protocol === 'https:' ? 'wss:' : 'ws:';
  const params = new URLSearchParams(query).toString();
  return `${scheme}//${base.host}${path}${params ? `?${params}` : ''}`;
}

export function openStream(
  path: string,
  query: Record<string, string>,
  subscribe: Record<string, unknown>,
  handlers: SocketHandlers,
  session: Session = defaultSession,
): Stream {
  let closed = false;
  let ws: WebSocket | null = null;
  let retries = 0;

  const connect = async () => {
    let token: string;
    try {
      token = await session.token();
    } catch {
      handlers.onError?.('You are logged out.');
      return;
    }
    if (closed) return;
    const socket = new WebSocket(socketUrl(path, query));
    ws = socket;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: 'auth', payload: { token } }));
    };
    socket.onmessage = (event) => {
      if (typeof event.data !== 'string') return;
      const message = JSON.parse(event.data) as Record<string, unknown>;
      if (message.type === 'auth' && message.status === 'ok') {
        retries = 0;
        socket.send(JSON.stringify({ type: 'subscribe', payload: subscribe }));
        handlers.onOpen?.();
      } else if (message.type === 'error') {
        const error = message.error as { message?: string } | undefined;
        handlers.onError?.(error?.message ?? 'the stream failed');
      } else {
        handlers.onMessage(message);
      }
    };
    socket.onclose = (event) => {
      if (closed) return;
      if (event.code === 4401 && retries < 3) {
        retries += 1;
        handlers.onClose?.(true);
        void session.renew().then(connect, () => handlers.onError?.('You are logged out.'));
      } else if (event.code !== 1000 && event.code !== 1008 && event.code < 4000 && retries < 5) {
        retries += 1;
        handlers.onClose?.(true);
        setTimeout(() => void connect(), 1000 * retries);
      } else {
        handlers.onClose?.(false);
      }
    };
  };
  void connect();
  return {
    close() {
      closed = true;
      ws?.close(1000);
    },
  };
}
