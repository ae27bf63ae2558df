import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from './errors';
import { Session } from './session';
import { upload } from './upload';

// A stand-in for the browser's XMLHttpRequest: answers as `answers` says, reporting upload progress in two steps.
type Answer = { status: number; body: unknown };
function fakeXhr(answers: Answer[]) {
  const sent: { url: string; auth: string; type: string; size: number }[] = [];
  class FakeXhr {
    upload: { onprogress: ((e: { loaded: number; total: number; lengthComputable: boolean }) => void) | null } = { onprogress: null };
    onload: (() => void) | null = null;
    onerror: (() => void) | null = null;
    onabort: (() => void) | null = null;
    status = 0;
    statusText = '';
    responseText = '';
    responseType = '';
    private url = '';
    private headers: Record<string, string> = {};
    open(_method: string, url: string) {
      this.url = url;
    }
    setRequestHeader(name: string, value: string) {
      this.headers[name] = value;
    }
    abort() {
      this.onabort?.();
    }
    send(body: Blob) {
      sent.push({ url: this.url, auth: this.headers.Authorization ?? '', type: this.headers['Content-Type'] ?? '', size: body.size });
      const answer = answers.shift()!;
      queueMicrotask(() => {
        this.upload.onprogress?.({ loaded: body.size / 2, total: body.size, lengthComputable: true });
        this.upload.onprogress?.({ loaded: body.size, total: body.size, lengthComputable: true });
        this.status = answer.status;
        this.responseText = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
        this.onload?.();
      });
    }
  }
  vi.stubGlobal('XMLHttpRequest', FakeXhr);
  return sent;
}

function loggedIn(): Session {
  let n = 0;
  const fetch = vi.fn(async () => {
    n += 1;
    const pair = { token: `t${n}`, expires_in: 3600, expires_at: 0, refresh_token: `r${n}`, refresh_expires_in: 99, token_type: 'Bearer', user: { username: 'ann', role: 'admin', groups: [] } };
    return new Response(JSON.stringify({ status: 'success', data: pair }), { status: 200 });
  });
  return new Session({ fetch: fetch as unknown as typeof globalThis.fetch });
}

const file = new Blob([new Uint8Array(1000)]);

describe('an upload', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('sends the raw bytes with the token, reports progress, and gives the envelope data', async () => {
    const sent = fakeXhr([{ status: 201, body: { status: 'success', data: { host: 'h1', size: 1000 } } }]);
    const session = loggedIn();
    await session.login('ann', 'pw');
    const seen: number[] = [];
    const data = await upload('/images/a/upload?host=h1', file, (loaded) => seen.push(loaded), undefined, session);
    expect(data).toEqual({ host: 'h1', size: 1000 });
    expect(seen).toEqual([500, 1000]);
    expect(sent).toEqual([{ url: '/api/v1/images/a/upload?host=h1', auth: 'Bearer t1', type: 'application/octet-stream', size: 1000 }]);
  });

  it('renews an expired token once and sends the file again', async () => {
    const sent = fakeXhr([
      { status: 401, body: { status: 'error', error: { code: 'UNAUTHORIZED', message: 'expired' } } },
      { status: 201, body: { status: 'success', data: { size: 1000 } } },
    ]);
    const session = loggedIn();
    await session.login('ann', 'pw');
    await upload('/images/a/upload', file, () => undefined, undefined, session);
    expect(sent.map((s) => s.auth)).toEqual(['Bearer t1', 'Bearer t2']);
  });

  it("fails with the envelope's message, or a readable line when the body is not the envelope", async () => {
    fakeXhr([
      { status: 409, body: { status: 'error', error: { code: 'CONFLICT', message: 'checksum mismatch', details: 'sha256 differs' } } },
      { status: 502, body: '<html>bad gateway</html>' },
    ]);
    const session = loggedIn();
    await session.login('ann', 'pw');
    const first = await upload('/x', file, () => undefined, undefined, session).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(ApiError);
    expect((first as ApiError).readable).toBe('checksum mismatch: sha256 differs');
    const second = await upload('/x', file, () => undefined, undefined, session).catch((e: unknown) => e);
    expect((second as ApiError).readable).toMatch(/HTTP 502/);
    expect((second as ApiError).readable).not.toContain('<html>');
  });
});
