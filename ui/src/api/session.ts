// The login: tokens live in this module's memory only (never localStorage or cookies), so closing the tab ends
// the session for this browser. The bearer token is renewed with the single-use refresh token shortly before it
// expires and whenever the gateway says 401; logout revokes the refresh token's family at the gateway.

import type { components } from './schema';
import { ApiError, errorFrom } from './errors';

export type TokenPair = components['schemas']['TokenPair'];
export type User = TokenPair['user'];

type Listener = (user: User | null) => void;

export interface SessionOptions {
  /** fetch to use (the page's; tests pass a stand-in). */
  fetch?: typeof fetch;
  /** seconds before expiry at which the token is renewed. */
  renewBefore?: number;
  now?: () => number;
}

export class Session {
  private pair: TokenPair | null = null;
  private obtainedAt = 0;
  private renewing: Promise<void> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private listeners = new Set<Listener>();
  private readonly fetch: typeof fetch;
  private readonly renewBefore: number;
  private readonly now: () => number;

  constructor(options: SessionOptions = {}) {
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.renewBefore = options.renewBefore ?? 60;
    this.now = options.now ?? (() => Date.now() / 1000);
  }

  get user(): User | null {
    return this.pair?.user ?? null;
  }

  get isAdmin(): boolean {
    return this.pair?.user.role === 'admin';
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async login(username: string, password: string): Promise<User> {
    this.accept(await this.post('/api/v1/auth/login', { username, password }));
    return this.pair!.user;
  }

  /** The bearer token to send now, renewed first when it is about to expire. */
  async token(): Promise<string> {
    if (!this.pair) throw new ApiError(401, 'UNAUTHORIZED', 'You are logged out. Log in again.');
    if (this.now() >= this.obtainedAt + this.pair.expires_in - this.renewBefore) await this.renew();
    return this.pair!.token;
  }

  /** Trade the refresh token for a new pair (one trade at a time; callers share it). A refusal logs out. */
  renew(): Promise<void> {
    if (!this.renewing) {
      const refresh = this.pair?.refresh_token;
      this.renewing = (async () => {
        if (!refresh) throw new ApiError(401, 'UNAUTHORIZED', 'You are logged out. Log in again.');
        try {
          this.accept(await this.post('/api/v1/auth/refresh', { refresh_token: refresh }));
        } catch (err) {
          if (err instanceof ApiError && err.status === 401) this.forget();
          throw err;
        }
      })().finally(() => {
        this.renewing = null;
      });
    }
    return this.renewing;
  }

  async logout(): Promise<void> {
    const refresh = this.pair?.refresh_token;
    this.forget();
    if (refresh) {
      try {
        await this.post('/api/v1/auth/logout', { refresh_token: refresh });
      } catch {
        // the login ends in this page either way; an unknown token means it had ended already
      }
    }
  }

  /** Drop the tokens (logout, or a refresh the gateway refused). */
  forget(): void {
    this.pair = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const listener of this.listeners) listener(null);
  }

  private accept(pair: TokenPair): void {
    this.pair = pair;
    this.obtainedAt = this.now();
    if (this.timer) clearTimeout(this.timer);
    const wait = Math.max(5, pair.expires_in - this.renewBefore) * 1000;
    // renew in the background too, so that a page left open keeps a valid token for its sockets
    this.timer = setTimeout(() => void this.renew().catch(() => undefined), wait);
    for (const listener of this.listeners) listener(pair.user);
  }

  private async post(path: string, body: unknown): Promise<TokenPair> {
    const response = await this.fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    const parsed: unknown = await response.json().catch(() => null);
    if (!response.ok) throw errorFrom(response.status, parsed, response.statusText);
    return (parsed as { data: TokenPair }).data;
  }
}

export const session = new Session();
