import { useEffect, useState } from 'preact/hooks';
import {
  api,
  type CopyStorage,
  type MigrationTargets,
  type MigrationView,
  type PreflightCheck,
  type VMView,
} from '../api/client';
import { describe } from '../api/errors';
import { finished, progressOf } from '../lib/migrations';
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

/** A host's pre-flight checks as the operator words them, one a line: passed, refused, or not known yet (or waiting). */
function Checks({ checks }: { checks: PreflightCheck[] }) {
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
  const [targets, setTargets] = useState<MigrationTargets | null>(null);
  const [target, setTarget] = useState('');
  const [copy, setCopy] = useState<CopyStorage>('none');
  const [bandwidth, setBandwidth] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [migrationId, setMigrationId] = useState<string | null>(null);

  // Each host's pre-flight, from the operator's own rules through the gateway; again when the storage choice changes.
  useEffect(() => {
    const asked = new AbortController();
    api.migrationTargets(vm, copy, asked.signal).then(
      (fresh) => {
        setTargets(fresh);
        setError(null);
        // a host picked before may be refused with the new choice: the operator picks then
        setTarget((picked) => (fresh.targets.some((t) => t.host_name === picked && t.can_take) ? picked : ''));
      },
      (err) => {
        if (!asked.signal.aborted) setError(describe(err));
      },
    );
    return () => asked.abort();
  }, [vm.id, copy]);

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
            {!targets && !error && <p class="muted">Checking the hosts…</p>}
            {(targets?.targets ?? []).map((host) => (
              <div class="candidate" key={host.host_name} data-host={host.host_name}>
                <label class="check">
                  <input
                    type="radio"
                    name="host"
                    value={host.host_name}
                    checked={target === host.host_name}
                    disabled={!host.can_take}
                    onChange={() => setTarget(host.host_name)}
                  />
                  {host.host_name} <Badge status={host.status} />
                  <span class={host.can_take ? 'muted' : 'bad-text'}>{host.can_take ? 'can take it' : 'cannot take it'}</span>
                </label>
                <Checks checks={host.checks} />
              </div>
            ))}
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
