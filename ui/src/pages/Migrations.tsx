import { useState } from 'preact/hooks';
import { api, type MigrationView } from '../api/client';
import { describe } from '../api/errors';
import { finished, progressOf } from '../lib/migrations';
import { usePoll } from '../lib/poll';
import { Badge, Confirm, ErrorBanner, Progress, Table, WriteButton } from '../ui';

/** Look again every second while a migration runs. */
const sooner = (all: MigrationView[]) => (all.some((m) => !finished(m.phase)) ? 1000 : null);

function MigrationBar({ migration }: { migration: MigrationView }) {
  const { value, text } = progressOf(migration);
  return (
    <div class="migration-bar">
      <Progress value={value} label={text} />
      {migration.failure_reason && <div class="bad-text">{migration.failure_reason}</div>}
    </div>
  );
}

function CancelButton({ migration, onClick }: { migration: MigrationView; onClick: () => void }) {
  const asked = migration.cancel_requested;
  return (
    <WriteButton
      onClick={onClick}
      disabled={asked}
      title={asked ? 'Cancelling: the source host stops the copy' : 'Stop this migration'}
      label={`Cancel the migration of ${migration.vm_name}`}
      danger
    >
      {asked ? 'Cancelling…' : 'Cancel…'}
    </WriteButton>
  );
}

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
      {data && (
        <Table
          rows={data}
          rowKey={(m) => m.id}
          cards
          rowAttrs={(m) => ({ 'data-migration': `${m.namespace}/${m.name}` })}
          empty="No migrations."
          columns={[
            {
              label: 'VM',
              cell: (m) => (
                <span>
                  {m.namespace}/{m.vm_name} <span class="muted">({m.name})</span>
                </span>
              ),
            },
            { label: 'Phase', cell: (m) => <Badge status={m.phase} /> },
            { label: 'From → to', cell: (m) => `${m.source_host_name ?? '?'} → ${m.destination_host_name ?? '?'}` },
            { label: 'Progress', cell: (m) => <MigrationBar migration={m} /> },
            {
              label: 'Actions',
              cell: (m) => !finished(m.phase) && <CancelButton migration={m} onClick={() => setCancel(m)} />,
            },
          ]}
        />
      )}
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
