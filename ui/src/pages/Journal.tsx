// A host's journal: filter by unit and priority, page through it (REST /logs), or follow it live (/ws/logs).

import { useEffect, useState } from 'preact/hooks';
import { api, type LogEntry } from '../api/client';
import { describe } from '../api/errors';
import { openStream } from '../api/socket';
import { ErrorBanner } from '../ui';

const PRIORITIES = ['', 'emerg', 'alert', 'crit', 'err', 'warning', 'notice', 'info', 'debug'];
const PAGE_SIZE = 50;
const KEEP = 500; // lines kept while following

export function Journal({ host }: { host: string }) {
  const [unit, setUnit] = useState('');
  const [priority, setPriority] = useState('');
  const [page, setPage] = useState(1);
  const [follow, setFollow] = useState(false);
  const [entries, setEntries] = useState<LogEntry[]>([]);
  const [total, setTotal] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [applied, setApplied] = useState({ unit: '', priority: '' });

  useEffect(() => {
    setError(null);
    if (follow) {
      setEntries([]);
      setTotal(null);
      const filters: Record<string, unknown> = { follow: true, lines: PAGE_SIZE };
      if (applied.unit) filters.unit = applied.unit;
      if (applied.priority) filters.priority = applied.priority;
      const stream = openStream('/ws/logs', { host }, { filters }, {
        onMessage: (message) => {
          if (message.type !== 'log') return;
          // newest first, as the pages are
          setEntries((old) => [message.data as LogEntry, ...old].slice(0, KEEP));
        },
        onError: setError,
      });
      return () => stream.close();
    }
    let current = true;
    api
      .logs({ host, service: applied.unit, priority: applied.priority, page, page_size: PAGE_SIZE })
      .then((result) => {
        if (!current) return;
        setEntries(result.logs);
        setTotal(result.total_count);
      })
      .catch((err) => current && setError(describe(err)));
    return () => {
      current = false;
    };
  }, [host, applied, page, follow]);

  const pages = total === null ? 1 : Math.max(1, Math.ceil(total / PAGE_SIZE));
  return (
    <section aria-labelledby="journal-title" class="journal">
      <h2 id="journal-title">Journal</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setPage(1);
          setApplied({ unit: unit.trim(), priority });
        }}
      >
        <label>
          Unit
          <input name="unit" placeholder="all units (e.g. sshd)" value={unit} onInput={(e) => setUnit(e.currentTarget.value)} />
        </label>
        <label>
          Priority
          <select name="priority" value={priority} onChange={(e) => setPriority(e.currentTarget.value)}>
            {PRIORITIES.map((p) => (
              <option value={p} key={p}>
                {p ? `${p} and worse` : 'any'}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Filter</button>
        <label class="check">
          <input type="checkbox" name="follow" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} />
          Follow
        </label>
      </form>
      <ErrorBanner error={error} />
      {!follow && (
        <nav class="pager" aria-label="Journal pages">
          <button type="button" disabled={page <= 1} onClick={() => setPage(page - 1)}>
            Newer
          </button>
          <span>
            Page {page} of {pages}
            {total !== null && ` (${total} entries)`}
          </span>
          <button type="button" disabled={page >= pages} onClick={() => setPage(page + 1)}>
            Older
          </button>
        </nav>
      )}
      {follow && <p class="muted" aria-live="polite">Following: new entries appear at the top.</p>}
      <ol class="log" aria-label="Journal entries">
        {entries.map((entry, i) => (
          <li key={`${entry.timestamp}-${i}`} class={`prio-${entry.priority}`}>
            <time>{entry.timestamp?.replace('T', ' ').slice(0, 19) ?? ''}</time>
            <span class="unit">{entry.unit}</span>
            <span class="msg">{entry.message}</span>
          </li>
        ))}
        {entries.length === 0 && !error && <li class="muted">No entries.</li>}
      </ol>
    </section>
  );
}
