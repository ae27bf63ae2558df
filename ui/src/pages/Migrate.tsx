import { useEffect, useState } from 'preact/hooks';
import { api, type HostView, type MigrationView, type VMView } from '../api/client';
import { describe } from '../api/errors';
import { bytes } from '../lib/format';
import { usePoll } from '../lib/poll';
import { Badge, Conditions, ErrorBanner, Modal, Progress } from '../ui';

type Resources = { cpu?: number; memory?: number } | null;

/** Why a host cannot take the VM now, or null when it can (the checks the operator's pre-flight makes first). */
export function unfit(host: HostView, vm: Pick<VMView, 'host' | 'cpu' | 'memory_bytes'>): string | null {
  if (host.name === vm.host) return 'the VM runs here';
  if (host.status !== 'connected') return `agent ${host.status}`;
  if (host.maintenance) return 'in maintenance';
  const free = (key: 'cpu' | 'memory') => {
    const total = (host.allocatable as Resources)?.[key];
    return total === undefined ? undefined : total - ((host.allocated as Resources)?.[key] ?? 0);
  };
  const cpu = free('cpu');
  const memory = free('memory');
  if (cpu !== undefined && cpu < vm.cpu) return `${cpu} vCPU free, the VM needs ${vm.cpu}`;
  if (memory !== undefined && memory < vm.memory_bytes) return `${bytes(memory)} free, the VM needs ${bytes(vm.memory_bytes)}`;
  return null;
}

export function MigrationProgress({ migration }: { migration: MigrationView }) {
  const p = migration.progress;
  const done = ['Succeeded', 'Failed', 'Cancelled'].includes(migration.phase);
  return (
    <div class="migration" aria-live="polite">
      <p>
        <Badge status={migration.phase} /> {migration.source_host_name ?? '?'} → {migration.destination_host_name ?? 'a host the operator picks'}
        {migration.queue_position ? ` (queued: #${migration.queue_position})` : ''}
      </p>
      <Progress
        value={migration.phase === 'Succeeded' ? 100 : (p?.percent ?? 0)}
        label={`${migration.phase === 'Succeeded' ? 100 : (p?.percent ?? 0)}%${p?.data_remaining != null && !done ? `, ${bytes(p.data_remaining)} left` : ''}`}
      />
      {migration.downtime_ms != null && <p>Downtime: {migration.downtime_ms} ms</p>}
      {migration.failure_reason && <p class="bad-text">{migration.failure_reason}</p>}
      <Conditions of={migration.conditions} />
    </div>
  );
}

export function MigrateDialog({ vm, onClose }: { vm: VMView; onClose: () => void }) {
  const [hosts, setHosts] = useState<HostView[] | null>(null);
  const [target, setTarget] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [migrationId, setMigrationId] = useState<string | null>(null);

  useEffect(() => {
    api.hosts().then(setHosts, (err) => setError(describe(err)));
  }, []);

  const start = async (event: Event) => {
    event.preventDefault();
    setError(null);
    try {
      const started = await api.migrate(vm, { destination_host_id: target || null } as Parameters<typeof api.migrate>[1]);
      setMigrationId(started.migration_id);
    } catch (err) {
      setError(describe(err));
    }
  };

  return (
    <Modal title={`Migrate ${vm.name}`} onClose={onClose}>
      {migrationId ? (
        <Following id={migrationId} />
      ) : (
        <form onSubmit={start}>
          <fieldset>
            <legend>Destination host</legend>
            <label class="check">
              <input type="radio" name="host" value="" checked={target === ''} onChange={() => setTarget('')} />
              Let the operator pick a host with room
            </label>
            {(hosts ?? []).map((host) => {
              const reason = unfit(host, vm);
              return (
                <label class="check" key={host.name}>
                  <input
                    type="radio"
                    name="host"
                    value={host.name}
                    checked={target === host.name}
                    disabled={reason !== null}
                    onChange={() => setTarget(host.name)}
                  />
                  {host.name} <Badge status={host.status} />
                  <span class="muted">{reason ? ` ${reason}` : ' ready'}</span>
                </label>
              );
            })}
          </fieldset>
          <ErrorBanner error={error} />
          <div class="actions">
            <button type="button" onClick={onClose}>
              Cancel
            </button>
            <button type="submit" class="primary">
              Migrate
            </button>
          </div>
        </form>
      )}
      {migrationId && (
        <div class="actions">
          <button type="button" onClick={onClose}>
            Close
          </button>
        </div>
      )}
    </Modal>
  );
}

function Following({ id }: { id: string }) {
  const { data, error } = usePoll(() => api.migration(id), 1000);
  return (
    <>
      <ErrorBanner error={error} />
      {data ? <MigrationProgress migration={data} /> : <p class="muted">Waiting for the migration…</p>}
    </>
  );
}
