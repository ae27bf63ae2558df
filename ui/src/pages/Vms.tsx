import { lazy, memo, Suspense } from 'preact/compat';
import { useCallback, useMemo, useState } from 'preact/hooks';
import { api, type VMView, type VmAction } from '../api/client';
import { describe } from '../api/errors';
import { useLiveVms } from '../lib/livevms';
import { href } from '../lib/router';
import { ACTION_LABELS, allowed, filterVms, nextPoll, sortVms, vmKey, type SortState } from '../lib/vms';
import { Badge, Conditions, Confirm, ErrorBanner, WriteButton } from '../ui';
import { MigrateDialog } from './Migrate';
import { VmCreate } from './VmCreate';

// The consoles bring xterm.js and noVNC: loaded the first time one is opened, not with the page.
const SerialConsole = lazy(() => import('./SerialConsole'));
const ScreenConsole = lazy(() => import('./ScreenConsole'));

type Pending = { vm: VMView; action: VmAction | 'force-stop' | 'delete' };

const Row = memo(
  function Row({ vm, selected, onSelect }: { vm: VMView; selected: boolean; onSelect: (key: string) => void }) {
    const key = vmKey(vm);
    return (
      <tr class={selected ? 'selected' : ''} data-vm={key}>
        <td>
          <button type="button" class="link" onClick={() => onSelect(key)} aria-pressed={selected}>
            {vm.name}
          </button>
        </td>
        <td>{vm.namespace}</td>
        <td>
          <Badge status={vm.deleting ? 'Terminating' : vm.status} />
        </td>
        <td>{vm.host ? <a href={href({ page: 'host', id: vm.host_id ?? vm.host })}>{vm.host}</a> : '—'}</td>
        <td class="wide">{vm.addresses.join(', ') || '—'}</td>
        <td class="wide">
          {vm.cpu} vCPU, {vm.memory}
        </td>
      </tr>
    );
  },
  (a, b) =>
    a.selected === b.selected &&
    a.onSelect === b.onSelect &&
    a.vm.status === b.vm.status &&
    a.vm.deleting === b.vm.deleting &&
    a.vm.host === b.vm.host &&
    a.vm.addresses.join() === b.vm.addresses.join() &&
    a.vm.cpu === b.vm.cpu &&
    a.vm.memory === b.vm.memory,
);

function Details(props: {
  vm: VMView;
  onAct: (p: Pending) => void;
  onMigrate: () => void;
  onConsole: (kind: 'console' | 'vnc') => void;
}) {
  const { vm, onAct, onMigrate, onConsole } = props;
  const can = allowed(vm);
  return (
    <aside class="details" aria-label={`Virtual machine ${vm.name}`}>
      <h2>
        {vm.name} <Badge status={vm.deleting ? 'Terminating' : vm.status} />
      </h2>
      <div class="actions" role="group" aria-label="Actions">
        <WriteButton onClick={() => onAct({ vm, action: 'start' })} disabled={!can.start}>
          Start
        </WriteButton>
        <WriteButton onClick={() => onAct({ vm, action: 'stop' })} disabled={!can.stop}>
          Stop
        </WriteButton>
        <WriteButton onClick={() => onAct({ vm, action: 'force-stop' })} disabled={!can.stop} danger>
          Force stop
        </WriteButton>
        <WriteButton onClick={() => onAct({ vm, action: 'restart' })} disabled={!can.restart}>
          Restart
        </WriteButton>
        <WriteButton onClick={onMigrate} disabled={!can.migrate} title="Move it to another host while it runs">
          Migrate…
        </WriteButton>
        <WriteButton onClick={() => onAct({ vm, action: 'delete' })} disabled={vm.deleting} danger>
          Delete…
        </WriteButton>
      </div>
      <div class="actions" role="group" aria-label="Consoles">
        <WriteButton onClick={() => onConsole('console')} disabled={!can.restart} title="The VM's serial port">
          Serial console
        </WriteButton>
        <WriteButton onClick={() => onConsole('vnc')} disabled={!can.restart} title="The VM's screen (VNC)">
          Screen
        </WriteButton>
      </div>
      <dl class="facts">
        <dt>Namespace</dt>
        <dd>{vm.namespace}</dd>
        <dt>Host</dt>
        <dd>{vm.host ?? 'not placed'}</dd>
        <dt>Size</dt>
        <dd>
          {vm.cpu} vCPU, {vm.memory}
        </dd>
        <dt>Addresses</dt>
        <dd>{vm.addresses.join(', ') || '—'}</dd>
        <dt>Run strategy</dt>
        <dd>{vm.run_strategy}</dd>
      </dl>
      <Conditions of={vm.conditions} />
    </aside>
  );
}

export function Vms() {
  const [pendingCount, setPendingCount] = useState(0);
  const sooner = useCallback((vms: VMView[]) => nextPoll(vms, pendingCount), [pendingCount]);
  const { data, error, refresh, mode } = useLiveVms(1500, sooner);
  const [selected, setSelected] = useState<string | null>(null);
  const [confirm, setConfirm] = useState<Pending | null>(null);
  const [creating, setCreating] = useState(false);
  const [migrating, setMigrating] = useState<VMView | null>(null);
  const [consoleOf, setConsoleOf] = useState<{ vm: VMView; kind: 'console' | 'vnc' } | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [filter, setFilter] = useState('');
  const [sort, setSort] = useState<SortState>({ column: 'name', descending: false });

  const rows = useMemo(() => sortVms(filterVms(data ?? [], filter), sort), [data, filter, sort]);
  const current = data?.find((vm) => vmKey(vm) === selected) ?? null;
  const select = useCallback((key: string) => setSelected((old) => (old === key ? null : key)), []);

  const run = async (p: Pending) => {
    setConfirm(null);
    setFailure(null);
    setPendingCount((n) => n + 1);
    try {
      if (p.action === 'delete') {
        await api.deleteVm(p.vm);
        setMessage(`Deleting ${p.vm.name}.`);
      } else {
        const force = p.action === 'force-stop';
        const result = await api.act(p.vm, p.action === 'force-stop' ? 'stop' : p.action, force);
        setMessage(`${ACTION_LABELS[p.action]} ${p.vm.name}: ${result.message}`);
      }
    } catch (err) {
      setFailure(describe(err));
    } finally {
      setPendingCount((n) => n - 1);
      refresh();
    }
  };

  const header = (column: SortState['column'], label: string) => (
    <th aria-sort={sort.column === column ? (sort.descending ? 'descending' : 'ascending') : 'none'}>
      <button
        type="button"
        class="link"
        onClick={() => setSort({ column, descending: sort.column === column ? !sort.descending : false })}
      >
        {label}
      </button>
    </th>
  );

  return (
    <section aria-labelledby="vms-title">
      <div class="title-row">
        <h1 id="vms-title">Virtual machines</h1>
        <WriteButton onClick={() => setCreating(true)}>Create VM…</WriteButton>
      </div>
      <ErrorBanner error={error} />
      <ErrorBanner error={failure} onClose={() => setFailure(null)} />
      {message && (
        <div class="banner info" role="status">
          {message}
        </div>
      )}
      <div class="toolbar">
        <label>
          Filter <input type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        </label>
        <span class="muted" data-testid="vm-count">
          {data ? `${rows.length} of ${data.length}` : 'Loading…'}
        </span>
        <span class="muted" data-testid="vm-updates" title="How the table learns of changes">
          {mode === 'live' ? 'Live' : mode === 'polling' ? 'Refreshed every few seconds' : ''}
        </span>
      </div>
      <div class={current ? 'split' : ''}>
        <div class="table-wrap">
          <table class="vms">
            <thead>
              <tr>
                {header('name', 'Name')}
                {header('namespace', 'Namespace')}
                {header('status', 'Phase')}
                {header('host', 'Host')}
                <th class="wide">Addresses</th>
                <th class="wide">Size</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((vm) => (
                <Row key={vmKey(vm)} vm={vm} selected={vmKey(vm) === selected} onSelect={select} />
              ))}
              {data && data.length === 0 && (
                <tr>
                  <td colSpan={6} class="muted">
                    No virtual machines yet.
                  </td>
                </tr>
              )}
            </tbody>
          </table>
        </div>
        {current && (
          <Details
            vm={current}
            onAct={setConfirm}
            onMigrate={() => setMigrating(current)}
            onConsole={(kind) => setConsoleOf({ vm: current, kind })}
          />
        )}
      </div>
      {confirm && (
        <Confirm
          title={`${confirm.action === 'delete' ? 'Delete' : ACTION_LABELS[confirm.action]} ${confirm.vm.name}?`}
          message={
            confirm.action === 'delete'
              ? `The VM ${confirm.vm.namespace}/${confirm.vm.name} and its disks are removed. This cannot be undone.`
              : confirm.action === 'force-stop'
                ? 'The VM is powered off at once, as if its plug were pulled: unsaved data in the guest is lost.'
                : `${ACTION_LABELS[confirm.action]} ${confirm.vm.namespace}/${confirm.vm.name}.`
          }
          confirm={confirm.action === 'delete' ? 'Delete' : ACTION_LABELS[confirm.action]}
          danger={confirm.action === 'delete' || confirm.action === 'force-stop'}
          onConfirm={() => void run(confirm)}
          onClose={() => setConfirm(null)}
        />
      )}
      {creating && (
        <VmCreate
          onClose={() => setCreating(false)}
          onCreated={(vm) => {
            setCreating(false);
            setMessage(`Created ${vm.name}.`);
            setSelected(vmKey(vm));
            refresh();
          }}
        />
      )}
      {migrating && <MigrateDialog vm={migrating} onClose={() => setMigrating(null)} />}
      {consoleOf && (
        <Suspense fallback={<p class="muted">Loading the console…</p>}>
          {consoleOf.kind === 'console' ? (
            <SerialConsole vm={consoleOf.vm} onClose={() => setConsoleOf(null)} />
          ) : (
            <ScreenConsole vm={consoleOf.vm} onClose={() => setConsoleOf(null)} />
          )}
        </Suspense>
      )}
    </section>
  );
}
