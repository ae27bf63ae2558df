import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Client } from './client';
import { ApiError } from './errors';
import { Session } from './session';

// A stand-in for the gateway's HTTP answers (the real gateway is exercised by the browser tests).
function gateway() {
  const calls: { url: string; body: unknown; auth?: string }[] = [];
  let issued = 0;
  const used = new Set<string>();
  const pair = () => {
    issued += 1;
    return { token: `t${issued}`, expires_in: 3600, expires_at: 0, refresh_token: `r${issued}`, refresh_expires_in: 99, token_type: 'Bearer', user: { username: 'ann', role: 'admin', groups: [] } };
  };
  const reply = (status: number, body: unknown) => new Response(JSON.stringify(body), { status });
  const fetch = vi.fn(async (url: string, init?: RequestInit) => {
    const body = init?.body ? JSON.parse(String(init.body)) : undefined;
    const auth = (init?.headers as Record<string, string> | undefined)?.Authorization;
    calls.push({ url, body, auth });
    if (url === '/api/v1/auth/login') {
      return body.password === 'right' ? reply(200, { status: 'success', data: pair() }) : reply(401, { status: 'error', error: { code: 'UNAUTHORIZED', message: 'invalid username or password' } });
    }
    if (url === '/api/v1/auth/refresh' || url === '/api/v1/auth/logout') {
      if (used.has(body.refresh_token)) return reply(401, { status: 'error', error: { code: 'UNAUTHORIZED', message: 'used' } });
      used.add(body.refresh_token);
      return reply(200, { status: 'success', data: url.endsWith('logout') ? { message: 'logged out' } : pair() });
    }
    // the API: the first token has expired at the gateway
    if (auth === 'Bearer t1') return reply(401, { status: 'error', error: { code: 'UNAUTHORIZED', message: 'expired' } });
    return reply(200, { status: 'success', data: { hosts: [], count: 0 } });
  });
  return { fetch: fetch as unknown as typeof globalThis.fetch, calls };
}

describe('the session', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('logs in and keeps the token pair in memory only', async () => {
    const gw = gateway();
    const session = new Session({ fetch: gw.fetch });
    const user = await session.login('ann', 'right');
    expect(user.role).toBe('admin');
    expect(session.isAdmin).toBe(true);
    expect(await session.token()).toBe('t1');
  });

  it('shows a refused password as the gateway says it', async () => {
    const session = new Session({ fetch: gateway().fetch });
    await expect(session.login('ann', 'wrong')).rejects.toThrow('invalid username or password');
    expect(session.user).toBeNull();
  });

  it('renews the token on a 401 and retries the request once', async () => {
    const gw = gateway();
    const session = new Session({ fetch: gw.fetch });
    await session.login('ann', 'right');
    const client = new Client(session, gw.fetch);
    expect(await client.hosts()).toEqual([]);
    expect(gw.calls.map((c) => c.auth ?? c.url)).toEqual(['/api/v1/auth/login', 'Bearer t1', '/api/v1/auth/refresh', 'Bearer t2']);
  });

  it('renews before the token expires, sharing one refresh between callers', async () => {
    let now = 1000;
    const gw = gateway();
    const session = new Session({ fetch: gw.fetch, now: () => now, renewBefore: 60 });
    await session.login('ann', 'right');
    now += 3600 - 30;
    const [a, b] = await Promise.all([session.token(), session.token()]);
    expect([a, b]).toEqual(['t2', 't2']);
    expect(gw.calls.filter((c) => c.url.endsWith('/refresh'))).toHaveLength(1);
  });

  it('logs out by revoking the refresh token, and forgets the tokens', async () => {
    const gw = gateway();
    const session = new Session({ fetch: gw.fetch });
    const seen: unknown[] = [];
    session.subscribe((u) => seen.push(u));
    await session.login('ann', 'right');
    await session.logout();
    expect(gw.calls.at(-1)).toMatchObject({ url: '/api/v1/auth/logout', body: { refresh_token: 'r1' } });
    expect(session.user).toBeNull();
    expect(seen.at(-1)).toBeNull();
    await expect(session.token()).rejects.toBeInstanceOf(ApiError);
  });

  it('a refused refresh ends the login', async () => {
    const gw = gateway();
    const session = new Session({ fetch: gw.fetch });
    await session.login('ann', 'right');
    await session.renew(); // r1 used
    (session as unknown as { pair: { refresh_token: string } }).pair.refresh_token = 'r1'; // replayed
    await expect(session.renew()).rejects.toThrow('used');
    expect(session.user).toBeNull();
  });
});
