import { useEffect, useState } from 'preact/hooks';
import { api } from '../api/client';
import { openStream } from '../api/socket';
import { bytes, duration } from '../lib/format';
import { usePoll } from '../lib/poll';
import { Badge, ErrorBanner, Table } from '../ui';
import { LiveChart, WINDOW, type Series } from './Chart';
import { Containers, Users } from './HostOps';
import { drainText } from './Hosts';
import { Journal } from './Journal';


type Iface = { name: string; state?: string; mac?: string; mtu?: number; addresses?: string[]; type?: string };
type Partition = { name: string; path: string; size: number; filesystem?: string; mount_point?: string; used?: number };
type Disk = { name: string; path: string; size: number; model?: string; type?: string; partitions?: Partition[] };

function push(series: Series, time: number, value: number): Series {
  const times = [...series.times, time];
  const values = [...series.values, value];
  const from = times.findIndex((t) => t >= time - WINDOW);
  return { times: times.slice(from), values: values.slice(from) };
}

function useMetrics(host: string) {
  const [cpu, setCpu] = useState<Series>({ times: [], values: [] });
  const [memory, setMemory] = useState<Series>({ times: [], values: [] });
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const stream = openStream('/ws/metrics', { host }, {}, {
      onMessage: (message) => {
        if (message.type !== 'metric') return;
        const data = message.data as { usage_percent?: number };
        const time = Date.parse(String(message.timestamp)) / 1000 || Date.now() / 1000;
        if (typeof data.usage_percent !== 'number') return;
        if (message.metric === 'cpu') setCpu((s) => push(s, time, data.usage_percent!));
        if (message.metric === 'memory') setMemory((s) => push(s, time, data.usage_percent!));
      },
      onError: setError,
    });
    return () => stream.close();
  }, [host]);
  return { cpu, memory, error };
}

export function HostPage({ id }: { id: string }) {
  const load = () => api.host(id);
  const { data: host, error } = usePoll(load, 10000);
  const metrics = useMetrics(id);
  const interfaces = (host?.interfaces ?? []) as Iface[];
  const disks = (host?.disks ?? []) as Disk[];
  const mounts = disks.flatMap((d) => (d.partitions ?? []).filter((p) => p.mount_point));

  return (
    <section aria-labelledby="host-title">
      <p>
        <a href="#/hosts">← Hosts</a>
      </p>
      <h1 id="host-title">
        {host?.name ?? id} {host && <Badge status={host.status} />}
      </h1>
      <ErrorBanner error={error} />
      {host && (
        <dl class="facts">
          <dt>Hostname</dt>
          <dd>{host.hostname ?? '—'}</dd>
          <dt>OS</dt>
          <dd>{host.os ?? '—'}</dd>
          <dt>Kernel</dt>
          <dd>{host.kernel ?? '—'}</dd>
          <dt>Uptime</dt>
          <dd>{duration(host.uptime)}</dd>
          <dt>VMs</dt>
          <dd>{host.vm_count}</dd>
          <dt>Drain</dt>
          <dd>{drainText(host)}</dd>
        </dl>
      )}
      <h2>Live</h2>
      <ErrorBanner error={metrics.error} />
      <div class="charts">
        <LiveChart title="CPU" series={metrics.cpu} />
        <LiveChart title="Memory" series={metrics.memory} />
      </div>
      <h2>Interfaces</h2>
      <Table
        rows={interfaces}
        rowKey={(i) => i.name}
        empty="No interfaces reported."
        columns={[
          { label: 'Name', cell: (i) => i.name },
          {
            label: 'State',
            cell: (i) => <span class={`badge ${i.state === 'up' ? 'ok' : 'idle'}`}>{i.state ?? 'unknown'}</span>,
          },
          { label: 'Addresses', cell: (i) => (i.addresses ?? []).join(', ') || '—' },
          { label: 'MAC', cell: (i) => i.mac ?? '—', wide: true },
          { label: 'MTU', cell: (i) => i.mtu ?? '—', wide: true },
        ]}
      />
      <h2>Disks</h2>
      <Table
        rows={disks}
        rowKey={(d) => d.path}
        empty="No disks reported."
        columns={[
          { label: 'Device', cell: (d) => d.path },
          { label: 'Size', cell: (d) => bytes(d.size) },
          { label: 'Type', cell: (d) => d.type ?? '—' },
          { label: 'Model', cell: (d) => d.model ?? '—', wide: true },
        ]}
      />
      <h2>Mounts</h2>
      <Table
        rows={mounts}
        rowKey={(p) => p.path}
        empty="No mounted partitions reported."
        columns={[
          { label: 'Mount point', cell: (p) => p.mount_point },
          { label: 'Device', cell: (p) => p.path },
          { label: 'Filesystem', cell: (p) => p.filesystem ?? '—' },
          { label: 'Used / size', cell: (p) => `${bytes(p.used)} / ${bytes(p.size)}` },
        ]}
      />
      <Journal host={id} />
      <Containers host={id} />
      <Users host={id} />
    </section>
  );
}
