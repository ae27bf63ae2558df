import { useState } from 'preact/hooks';
import { api, type MigrationView } from '../api/client';
import { describe } from '../api/errors';
import { finished, progressOf } from '../lib/migrations';
import { usePoll } from '../lib/poll';
import { Badge, Confirm, ErrorBanner, Progress, WriteButton } from '../ui';

/** Look again every second while a migration runs. */
const sooner = (all: MigrationView[]) => (all.some((m) => !finished(m.phase)) ? 1000 : null);

export function Migrations() {
  const { data, error, refresh } = usePoll(api.migrations, 3000, sooner);
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
              <th>
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {(data ?? []).map((m) => {
              const progress = progressOf(m);
              return (
                <tr key={m.id} data-migration={`${m.namespace}/${m.name}`}>
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
                    <Progress value={progress.value} label={progress.text} />
                    {m.failure_reason && <div class="bad-text">{m.failure_reason}</div>}
                  </td>
                  <td>
                    {!finished(m.phase) && (
                      <WriteButton
                        onClick={() => setCancel(m)}
                        disabled={m.cancel_requested}
                        title={m.cancel_requested ? 'Cancelling: the source host stops the copy' : 'Stop this migration'}
                        label={`Cancel the migration of ${m.vm_name}`}
                        danger
                      >
                        {m.cancel_requested ? 'Cancelling…' : 'Cancel…'}
                      </WriteButton>
                    )}
                  </td>
                </tr>
              );
            })}
            {data && data.length === 0 && (
              <tr>
                <td colSpan={5} class="muted">
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
