import { api, type HostView } from '../api/client';
import { bytes, percent } from '../lib/format';
import { usePoll } from '../lib/poll';
import { href } from '../lib/router';
import { Badge, ErrorBanner, Table } from '../ui';

type Info = { threads?: number; usage_percent?: number; total?: number; used?: number };
const info = (value: unknown): Info => (value ?? {}) as Info;

export function drainText(host: HostView): string {
  const drain = host.drain as { phase?: string; remaining?: number } | null;
  if (drain?.phase) return drain.phase === 'Draining' ? `Draining (${drain.remaining ?? 0} left)` : drain.phase;
  return host.maintenance ? 'Maintenance' : '—';
}

export function Hosts() {
  const { data, error } = usePoll(api.hosts, 5000);
  return (
    <section aria-labelledby="hosts-title">
      <h1 id="hosts-title">Hosts</h1>
      <ErrorBanner error={error} />
      {data === undefined && !error && <p class="muted">Loading…</p>}
      {data && (
        <Table
          rows={data}
          rowKey={(h) => h.name}
          empty="No hosts yet: a host appears when its agent starts."
          columns={[
            { label: 'Name', cell: (h) => <a href={href({ page: 'host', id: h.id ?? h.name })}>{h.name}</a> },
            { label: 'Status', cell: (h) => <Badge status={h.status} /> },
            {
              label: 'CPU',
              cell: (h) => `${info(h.cpu).threads ?? '—'} threads, ${percent(info(h.cpu).usage_percent)}`,
            },
            { label: 'Memory', cell: (h) => `${bytes(info(h.memory).used)} / ${bytes(info(h.memory).total)}` },
            { label: 'VMs', cell: (h) => h.vm_count },
            { label: 'Drain', cell: drainText },
            { label: 'Kernel', cell: (h) => h.kernel ?? '—', wide: true },
          ]}
        />
      )}
    </section>
  );
}
