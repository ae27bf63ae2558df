import { useEffect, useState } from 'preact/hooks';
import { api, type HostView, type MigrationView, type VMView } from '../api/client';
import { describe } from '../api/errors';
import { type Check, type CopyStorage, finished, preflight, progressOf } from '../lib/migrations';
import { usePoll } from '../lib/poll';
import { Badge, Conditions, ErrorBanner, Modal, Progress } from '../ui';

export function MigrationProgress({ migration }: { migration: MigrationView }) {
  const { value, text } = progressOf(migration);
  return (
    <div class="migration" aria-live="polite">
      <p>
        <Badge status={migration.phase} /> {migration.source_host_name ?? '?'} → {migration.destination_host_name ?? 'a host the operator picks'}
        {migration.queue_position ? ` (queued: #${migration.queue_position})` : ''}
      </p>
      <Progress value={value} label={text} />
      {migration.failure_reason && <p class="bad-text">{migration.failure_reason}</p>}
      <Conditions of={migration.conditions} />
    </div>
  );
}

/** A host's pre-flight conditions, one a line: passed, refused, or not known yet. */
function Checks({ checks }: { checks: Check[] }) {
  return (
    <ul class="checks">
      {checks.map((c) => (
        <li key={c.name} class={c.ok === false ? 'bad-text' : c.ok === null ? 'muted' : 'ok-text'}>
          <span aria-hidden="true">{c.ok === false ? '✗' : c.ok === null ? '?' : '✓'}</span> {c.name}: {c.message}
        </li>
      ))}
    </ul>
  );
}

export function MigrateDialog({ vm, onClose }: { vm: VMView; onClose: () => void }) {
  const [hosts, setHosts] = useState<HostView[] | null>(null);
  const [target, setTarget] = useState('');
  const [copy, setCopy] = useState<CopyStorage>('none');
  const [bandwidth, setBandwidth] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [migrationId, setMigrationId] = useState<string | null>(null);

  useEffect(() => {
    api.hosts().then(setHosts, (err) => setError(describe(err)));
  }, []);
  const source = (hosts ?? []).find((h) => h.name === vm.host);

  const start = async (event: Event) => {
    event.preventDefault();
    setError(null);
    try {
      const started = await api.migrate(vm, {
        destination_host_id: target || null,
        copy_storage: copy,
        bandwidth_mib_per_second: Number(bandwidth || 0),
      } as Parameters<typeof api.migrate>[1]);
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
              const checks = preflight(host, vm, source, copy);
              const refused = checks.some((c) => c.ok === false);
              return (
                <div class="candidate" key={host.name} data-host={host.name}>
                  <label class="check">
                    <input
                      type="radio"
                      name="host"
                      value={host.name}
                      checked={target === host.name}
                      disabled={refused}
                      onChange={() => setTarget(host.name)}
                    />
                    {host.name} <Badge status={host.status} />
                    <span class={refused ? 'bad-text' : 'muted'}>{refused ? 'cannot take it' : 'ready'}</span>
                  </label>
                  <Checks checks={checks} />
                </div>
              );
            })}
          </fieldset>
          <div class="form-grid">
            <label>
              Storage
              <select value={copy} onChange={(e) => setCopy((e.target as HTMLSelectElement).value as CopyStorage)}>
                <option value="none">Shared (no copy)</option>
                <option value="all">Copy every disk</option>
                <option value="incremental">Copy what differs</option>
              </select>
            </label>
            <label>
              Bandwidth limit (MiB/s)
              <input
                type="number"
                min={0}
                placeholder="unlimited"
                value={bandwidth}
                onInput={(e) => setBandwidth((e.target as HTMLInputElement).value)}
              />
            </label>
          </div>
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
  const { data, error } = usePoll(
    () => api.migration(id),
    1000,
    (m) => (finished(m.phase) ? 5000 : 1000),
  );
  return (
    <>
      <ErrorBanner error={error} />
      {data ? <MigrationProgress migration={data} /> : <p class="muted">Waiting for the migration…</p>}
    </>
  );
}
