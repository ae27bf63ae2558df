import { useState } from 'preact/hooks';
import { api, type MigrationView } from '../api/client';
import { describe } from '../api/errors';
import { bytes } from '../lib/format';
import { usePoll } from '../lib/poll';
import { Badge, Confirm, ErrorBanner, Progress, WriteButton } from '../ui';

const FINISHED = ['Succeeded', 'Failed', 'Cancelled'];

export function Migrations() {
  const { data, error, refresh } = usePoll(api.migrations, 3000, (all) =>
    all.some((m) => !FINISHED.includes(m.phase)) ? 1000 : null,
  );
  const [cancel, setCancel] = useState<MigrationView | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  const doCancel = async (m: MigrationView) => {
    setCancel(null);
    try {
      await api.cancelMigration(m.id);
    } catch (err) {
      setFailure(describe(err));
    }
    refresh();
  };

  return (
    <section aria-labelledby="migrations-title">
      <h1 id="migrations-title">Migrations</h1>
      <ErrorBanner error={error} />
      <ErrorBanner error={failure} onClose={() => setFailure(null)} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th>VM</th>
              <th>Phase</th>
              <th>From → to</th>
              <th>Progress</th>
              <th class="wide">Downtime</th>
              <th>
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(data ?? []).map((m) => {
              const percent = m.phase === 'Succeeded' ? 100 : (m.progress?.percent ?? 0);
              return (
                <tr key={m.id}>
                  <td>
                    {m.namespace}/{m.vm_name}
                  </td>
                  <td>
                    <Badge status={m.phase} />
                  </td>
                  <td>
                    {m.source_host_name ?? '?'} → {m.destination_host_name ?? '?'}
                  </td>
                  <td>
                    <Progress
                      value={percent}
                      label={`${percent}%${m.progress?.data_remaining != null && !FINISHED.includes(m.phase) ? `, ${bytes(m.progress.data_remaining)} left` : ''}`}
                    />
                    {m.failure_reason && <div class="bad-text">{m.failure_reason}</div>}
                  </td>
                  <td class="wide">{m.downtime_ms != null ? `${m.downtime_ms} ms` : '—'}</td>
                  <td>
                    {!FINISHED.includes(m.phase) && (
                      <WriteButton onClick={() => setCancel(m)} disabled={m.cancel_requested} danger>
                        Cancel
                      </WriteButton>
                    )}
                  </td>
                </tr>
              );
            })}
            {data && data.length === 0 && (
              <tr>
                <td colSpan={6} class="muted">
                  No migrations.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      {cancel && (
        <Confirm
          title={`Cancel the migration of ${cancel.vm_name}?`}
          message="The VM stays on its source host."
          confirm="Cancel migration"
          danger
          onConfirm={() => void doCancel(cancel)}
          onClose={() => setCancel(null)}
        />
      )}
    </section>
  );
}
