import { api, type HostView } from '../api/client';
import { bytes, percent } from '../lib/format';
import { usePoll } from '../lib/poll';
import { href } from '../lib/router';
import { Badge, ErrorBanner } from '../ui';

type Info = { threads?: number; usage_percent?: number; total?: number; used?: number };

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
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Name</th>
                <th>Status</th>
                <th>CPU</th>
                <th>Memory</th>
                <th>VMs</th>
                <th>Drain</th>
                <th class="wide">Kernel</th>
              </tr>
            </thead>
            <tbody>
              {data.map((host) => {
                const cpu = (host.cpu ?? {}) as Info;
                const memory = (host.memory ?? {}) as Info;
                return (
                  <tr key={host.name}>
                    <td>
                      <a href={href({ page: 'host', id: host.id ?? host.name })}>{host.name}</a>
                    </td>
                    <td>
                      <Badge status={host.status} />
                    </td>
                    <td>
                      {cpu.threads ?? '—'} threads, {percent(cpu.usage_percent)}
                    </td>
                    <td>
                      {bytes(memory.used)} / {bytes(memory.total)}
                    </td>
                    <td>{host.vm_count}</td>
                    <td>{drainText(host)}</td>
                    <td class="wide">{host.kernel ?? '—'}</td>
                  </tr>
                );
              })}
              {data.length === 0 && (
                <tr>
                  <td colSpan={7} class="muted">
                    No hosts yet: a host appears when its agent starts.
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
