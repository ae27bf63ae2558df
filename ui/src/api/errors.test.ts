import { describe as group, expect, it } from 'vitest';
import { ApiError, describe, errorFrom } from './errors';

group('errors from the API', () => {
  it('reads the envelope and names the bad fields', () => {
    const err = errorFrom(400, {
      status: 'error',
      error: { code: 'INVALID_INPUT', message: 'invalid request', fields: [{ field: 'cpu', message: 'must be at least 1' }] },
    });
    expect(err.code).toBe('INVALID_INPUT');
    expect(err.readable).toBe('invalid request (cpu: must be at least 1)');
  });

  it('explains a 403 to a viewer', () => {
    const err = errorFrom(403, { status: 'error', error: { code: 'PERMISSION_DENIED', message: 'role viewer may not' } });
    expect(err.readable).toMatch(/^Not allowed: role viewer may not\. .*admin/);
  });

  it('never shows raw JSON or HTML for a body that is not the envelope', () => {
    expect(errorFrom(502, '<html>Bad gateway</html>', 'Bad Gateway').readable).toBe(
      'the gateway answered HTTP 502 Bad Gateway without an explanation',
    );
    expect(errorFrom(500, null).message).not.toContain('{');
  });

  it('adds the details string after the message', () => {
    const err = errorFrom(503, { error: { code: 'AGENT_UNREACHABLE', message: 'host h1 is unreachable', details: 'timed out' } });
    expect(err.readable).toBe('host h1 is unreachable: timed out');
  });

  it('describes network failures and other throws as one line', () => {
    expect(describe(new TypeError('Failed to fetch'))).toMatch(/cannot be reached/);
    expect(describe(new ApiError(409, 'CONFLICT', 'already running'))).toBe('already running');
    expect(describe('odd')).toBe('odd');
  });
});
