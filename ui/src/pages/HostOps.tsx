// A host's containers (from its runtime) and its human accounts: read on demand, not polled.

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api/client';
import { describe } from '../api/errors';
import { Badge, ErrorBanner, Table } from '../ui';

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
        <Table
          rows={data.containers}
          rowKey={(c) => c.id}
          empty="No containers."
          columns={[
            { label: 'Name', cell: (c) => c.name },
            { label: 'State', cell: (c) => <Badge status={c.state} /> },
            { label: 'Image', cell: (c) => c.image },
            { label: 'Pod', cell: (c) => c.pod ?? '—', wide: true },
          ]}
        />
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
        <Table
          rows={data}
          rowKey={(u) => u.username}
          empty="No accounts."
          columns={[
            { label: 'User', cell: (u) => u.username },
            { label: 'Uid', cell: (u) => u.uid },
            { label: 'Groups', cell: (u) => (u.groups ?? []).join(', ') },
            { label: 'Shell', cell: (u) => u.shell, wide: true },
          ]}
        />
      )}
    </section>
  );
}
