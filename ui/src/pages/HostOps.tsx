// A host's containers (from its runtime) and its human accounts: read on demand, not polled.

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api/client';
import { describe } from '../api/errors';
import { Badge, ErrorBanner } from '../ui';

function useOnce<T>(load: () => Promise<T>, key: string) {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string | null>(null);
  const [round, setRound] = useState(0);
  useEffect(() => {
    let current = true;
    setError(null);
    load().then(
      (d) => current && setData(d),
      (err) => current && setError(describe(err)),
    );
    return () => {
      current = false;
    };
  }, [key, round]);
  return { data, error, reload: () => setRound((n) => n + 1) };
}

export function Containers({ host }: { host: string }) {
  const { data, error, reload } = useOnce(() => api.containers(host), host);
  return (
    <section aria-labelledby="containers-title">
      <div class="title-row">
        <h2 id="containers-title">Containers{data ? ` (${data.runtime})` : ''}</h2>
        <button type="button" onClick={reload}>
          Refresh
        </button>
      </div>
      <ErrorBanner error={error} />
      {data && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Name</th>
                <th>State</th>
                <th>Image</th>
                <th class="wide">Pod</th>
              </tr>
            </thead>
            <tbody>
              {data.containers.map((c) => (
                <tr key={c.id}>
                  <td>{c.name}</td>
                  <td>
                    <Badge status={c.state} />
                  </td>
                  <td>{c.image}</td>
                  <td class="wide">{c.pod ?? '—'}</td>
                </tr>
              ))}
              {data.containers.length === 0 && (
                <tr>
                  <td colSpan={4} class="muted">
                    No containers.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export function Users({ host }: { host: string }) {
  const { data, error } = useOnce(() => api.users(host), host);
  return (
    <section aria-labelledby="users-title">
      <h2 id="users-title">Users</h2>
      <ErrorBanner error={error} />
      {data && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th>User</th>
                <th>Uid</th>
                <th>Groups</th>
                <th class="wide">Shell</th>
              </tr>
            </thead>
            <tbody>
              {data.map((u) => (
                <tr key={u.username}>
                  <td>{u.username}</td>
                  <td>{u.uid}</td>
                  <td>{(u.groups ?? []).join(', ')}</td>
                  <td class="wide">{u.shell}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
