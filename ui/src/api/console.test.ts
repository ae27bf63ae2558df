import { describe, expect, it } from 'vitest';
import { ConsoleSession, closeReason } from './console';

// A stand-in for the browser's WebSocket: records what the page sends; the test plays the gateway.
class StandInSocket {
  sent: (string | Uint8Array)[] = [];
  readyState = 0;
  binaryType = 'blob';
  onopen: (() => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: ((e: { code: number }) => void) | null = null;
  constructor(readonly url: string) {}
  send(data: string | Uint8Array) {
    this.sent.push(data);
  }
  close(code = 1000) {
    this.onclose?.({ code });
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
}

(globalThis as { location?: unknown }).location = { protocol: 'https:', host: 'vapor.example:8080' };

function start(force = false) {
  let socket!: StandInSocket;
  const events: string[] = [];
  const received: number[][] = [];
  const session = new ConsoleSession(
    {
      vm: { name: 'web 1', namespace: 'team' },
      kind: 'console',
      token: 'jwt',
      force,
      cols: 100,
      rows: 30,
      open: (url) => (socket = new StandInSocket(url)) as unknown as WebSocket,
    },
    {
      onReady: () => events.push('ready'),
      onData: (bytes) => received.push([...bytes]),
      onEnd: (reason, code) => events.push(`end ${code}: ${reason}`),
    },
  );
  return { socket, session, events, received };
}

describe('a console session', () => {
  it('authenticates, subscribes with the terminal size, then carries bytes both ways', () => {
    const { socket, session, events, received } = start(true);
    expect(socket.url).toBe('wss://vapor.example:8080/ws/vms/web%201/console?namespace=team');
    expect(socket.binaryType).toBe('arraybuffer');
    socket.open();
    expect(socket.sent).toEqual([JSON.stringify({ type: 'auth', payload: { token: 'jwt' } })]);
    socket.onmessage?.({ data: JSON.stringify({ type: 'auth', status: 'ok', user: 'ann' }) });
    expect(JSON.parse(String(socket.sent[1]))).toEqual({ type: 'subscribe', payload: { force: true, cols: 100, rows: 30 } });
    expect(events).toEqual(['ready']);
    socket.onmessage?.({ data: new Uint8Array([108, 111, 103, 105, 110, 58]).buffer });
    expect(received).toEqual([[108, 111, 103, 105, 110, 58]]);
    session.send('ls\r');
    expect([...(socket.sent[2] as Uint8Array)]).toEqual([108, 115, 13]);
    session.resize(120, 40);
    expect(JSON.parse(String(socket.sent[3]))).toEqual({ type: 'resize', cols: 120, rows: 40 });
  });

  it('ends with the gateway\'s own message when it sent one', () => {
    const { socket, events } = start();
    socket.open();
    socket.onmessage?.({ data: JSON.stringify({ type: 'error', error: { code: 'CONFLICT', message: 'alice holds the console' } }) });
    socket.close(4409);
    expect(events).toEqual(['end 4409: alice holds the console']);
  });

  it('says what a close code means otherwise', () => {
    expect(closeReason(4409, null)).toMatch(/Another session/);
    expect(closeReason(1006, null)).toMatch(/cannot be reached/);
    expect(closeReason(4999, null)).toBe('The console closed (4999).');
  });
});
