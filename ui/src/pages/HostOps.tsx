// A host's containers (from its runtime) and its human accounts: read on demand, not polled, and changed
// through the write endpoints the API has (Docker containers: start, stop, remove; accounts: create, new
// password). Destructive actions ask first.

import { useEffect, useState } from 'preact/hooks';
import { api, type ContainerSummary } from '../api/client';
import { describe } from '../api/errors';
import { Badge, Confirm, ErrorBanner, Table, WriteButton } from '../ui';
import { ContainerCreate, ImagePull } from './ContainerForms';
import { PasswordReset, UserCreate } from './UserForms';

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

/** What an action said: a note that it worked, or the error; the list is read again after it. */
function useOutcome(reload: () => void) {
  const [note, setNote] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const run = async (call: () => Promise<string>) => {
    setNote(null);
    setFailure(null);
    try {
      setNote(await call());
    } catch (err) {
      setFailure(describe(err));
    }
    reload();
  };
  const shown = (
    <>
      {note && (
        <p class="banner info" role="status">
          {note}
        </p>
      )}
      <ErrorBanner error={failure} onClose={() => setFailure(null)} />
    </>
  );
  return { run, shown, setNote };
}

const RUNNING = 'CONTAINER_RUNNING';
type Asked = { container: ContainerSummary; action: 'stop' | 'remove' };

export function Containers({ host }: { host: string }) {
  const { data, error, reload } = useOnce(() => api.containers(host), host);
  const { run, shown, setNote } = useOutcome(reload);
  const [asked, setAsked] = useState<Asked | null>(null);
  const [dialog, setDialog] = useState<'create' | 'pull' | null>(null);
  const done = (what: string) => {
    setDialog(null);
    setNote(what);
    reload();
  };
  // Docker's containers can be started, stopped and removed through the API; a CRI runtime's are the kubelet's.
  const docker = data?.runtime === 'docker';
  const act = (c: ContainerSummary, action: 'start' | 'stop' | 'remove') => {
    setAsked(null);
    void run(async () => {
      if (action === 'remove') return `Container ${(await api.dockerRemove(host, c.id)).name || c.name} removed.`;
      const done = await api.dockerAct(host, c.id, action);
      return `Container ${c.name} is ${done.state} now.`;
    });
  };
  const actions = (c: ContainerSummary) => {
    const running = c.state === RUNNING;
    return (
      <div class="row-actions">
        {running ? (
          <WriteButton onClick={() => setAsked({ container: c, action: 'stop' })} label={`Stop ${c.name}`}>
            Stop…
          </WriteButton>
        ) : (
          <WriteButton onClick={() => act(c, 'start')} label={`Start ${c.name}`}>
            Start
          </WriteButton>
        )}
        <WriteButton
          danger
          disabled={running}
          title={running ? 'Stop it first: a running container cannot be removed' : undefined}
          onClick={() => setAsked({ container: c, action: 'remove' })}
          label={`Remove ${c.name}`}
        >
          Remove…
        </WriteButton>
      </div>
    );
  };
  return (
    <section aria-labelledby="containers-title">
      <div class="title-row">
        <h2 id="containers-title">Containers{data ? ` (${data.runtime})` : ''}</h2>
        <div class="row-actions">
          {docker && <WriteButton onClick={() => setDialog('pull')}>Pull image…</WriteButton>}
          {docker && <WriteButton onClick={() => setDialog('create')}>Create container…</WriteButton>}
          <button type="button" onClick={reload}>
            Refresh
          </button>
        </div>
      </div>
      <ErrorBanner error={error} />
      {shown}
      {data && (
        <Table
          rows={data.containers}
          rowKey={(c) => c.id}
          cards
          rowAttrs={(c) => ({ 'data-container': c.name })}
          empty="No containers."
          columns={[
            { label: 'Name', cell: (c) => c.name },
            { label: 'State', cell: (c) => <Badge status={c.state} /> },
            { label: 'Image', cell: (c) => c.image, wide: true },
            { label: 'Pod', cell: (c) => c.pod ?? '—', wide: true },
            ...(docker ? [{ label: 'Actions', cell: actions }] : []),
          ]}
        />
      )}
      {dialog === 'create' && <ContainerCreate host={host} onClose={() => setDialog(null)} onDone={done} />}
      {dialog === 'pull' && <ImagePull host={host} onClose={() => setDialog(null)} onDone={done} />}
      {asked && (
        <Confirm
          title={`${asked.action === 'stop' ? 'Stop' : 'Remove'} container ${asked.container.name}?`}
          message={
            asked.action === 'stop'
              ? 'Its processes get SIGTERM, then SIGKILL after 10 seconds.'
              : 'The container and its writable layer are deleted; this cannot be undone.'
          }
          confirm={asked.action === 'stop' ? 'Stop' : 'Remove'}
          danger
          onConfirm={() => act(asked.container, asked.action)}
          onClose={() => setAsked(null)}
        />
      )}
    </section>
  );
}

export function Users({ host }: { host: string }) {
  const { data, error, reload } = useOnce(() => api.users(host), host);
  const { shown, setNote } = useOutcome(reload);
  const [creating, setCreating] = useState(false);
  const [resetting, setResetting] = useState<string | null>(null);
  const done = (what: string) => {
    setCreating(false);
    setResetting(null);
    setNote(what);
    reload();
  };
  return (
    <section aria-labelledby="users-title">
      <div class="title-row">
        <h2 id="users-title">Users</h2>
        <WriteButton onClick={() => setCreating(true)}>Create account…</WriteButton>
      </div>
      <ErrorBanner error={error} />
      {shown}
      {data && (
        <Table
          rows={data}
          rowKey={(u) => u.username}
          cards
          rowAttrs={(u) => ({ 'data-user': u.username })}
          empty="No accounts."
          columns={[
            { label: 'User', cell: (u) => u.username },
            { label: 'Uid', cell: (u) => u.uid },
            { label: 'Groups', cell: (u) => (u.groups ?? []).join(', '), wide: true },
            { label: 'Shell', cell: (u) => u.shell, wide: true },
            {
              label: 'Actions',
              cell: (u) => (
                <div class="row-actions">
                  <WriteButton onClick={() => setResetting(u.username)} label={`New password for ${u.username}`}>
                    New password…
                  </WriteButton>
                </div>
              ),
            },
          ]}
        />
      )}
      {creating && <UserCreate host={host} onClose={() => setCreating(false)} onDone={done} />}
      {resetting && (
        <PasswordReset host={host} username={resetting} onClose={() => setResetting(null)} onDone={done} />
      )}
    </section>
  );
}
