// Small pieces every page uses: status badges, error banners, confirmation dialogs, progress bars.

import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { session } from './api/session';
import { tone } from './lib/format';

export const READ_ONLY = 'Your role (viewer) may only read: an admin can do this.';

export function Badge({ status }: { status: string | null | undefined }) {
  return <span class={`badge ${tone(status)}`}>{status ?? '—'}</span>;
}

export function ErrorBanner({ error, onClose }: { error: string | null; onClose?: () => void }) {
  if (!error) return null;
  return (
    <div class="banner error" role="alert">
      <span>{error}</span>
      {onClose && (
        <button type="button" class="link" onClick={onClose} aria-label="Dismiss">
          ×
        </button>
      )}
    </div>
  );
}

export function Progress({ value, label }: { value: number; label?: string }) {
  const clamped = Math.max(0, Math.min(100, value));
  return (
    <div class="progress" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={clamped}>
      <div class="fill" style={{ width: `${clamped}%` }} />
      <span>{label ?? `${clamped}%`}</span>
    </div>
  );
}

/** A button for a write: disabled, with the reason, for a viewer. */
export function WriteButton(props: {
  onClick: () => void;
  children: ComponentChildren;
  danger?: boolean;
  disabled?: boolean;
  title?: string;
  label?: string;
}) {
  const viewer = !session.isAdmin;
  return (
    <button
      type="button"
      class={props.danger ? 'danger' : ''}
      onClick={props.onClick}
      disabled={viewer || props.disabled}
      title={viewer ? READ_ONLY : props.title}
      aria-label={props.label}
      data-write
    >
      {props.children}
    </button>
  );
}

/** A modal dialog (the browser's <dialog>: focus kept inside, Escape closes). */
export function Modal(props: { title: string; onClose: () => void; children: ComponentChildren; wide?: boolean }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);
  return (
    <dialog
      ref={ref}
      class={props.wide ? 'wide-dialog' : undefined}
      aria-label={props.title}
      onCancel={(event) => {
        event.preventDefault();
        props.onClose();
      }}
    >
      <h2>{props.title}</h2>
      {props.children}
    </dialog>
  );
}

export function Confirm(props: {
  title: string;
  message: ComponentChildren;
  confirm: string;
  danger?: boolean;
  onConfirm: () => void;
  onClose: () => void;
}) {
  return (
    <Modal title={props.title} onClose={props.onClose}>
      <p>{props.message}</p>
      <div class="actions">
        <button type="button" onClick={props.onClose}>
          Cancel
        </button>
        <button type="button" class={props.danger ? 'danger' : 'primary'} onClick={props.onConfirm} autofocus>
          {props.confirm}
        </button>
      </div>
    </Modal>
  );
}

export interface Column<T> {
  label: string;
  cell: (row: T) => ComponentChildren;
  /** left out at phone width */
  wide?: boolean;
}

/** A plain table of rows (the VM table has its own: sortable, memoized rows). */
export function Table<T>(props: {
  columns: Column<T>[];
  rows: T[];
  rowKey: (row: T) => string;
  empty: string;
  /** attributes of a row's <tr> (data-* names for tests and styles) */
  rowAttrs?: (row: T) => Record<string, string>;
  /** at phone width each row is a card of label: value lines (rows with actions stay usable) */
  cards?: boolean;
}) {
  const { columns, rows } = props;
  const wide = (c: Column<T>) => (c.wide ? 'wide' : undefined);
  return (
    <div class="table-wrap">
      <table class={props.cards ? 'cards' : undefined}>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c.label} class={wide(c)}>
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row) => (
            <tr key={props.rowKey(row)} {...props.rowAttrs?.(row)}>
              {columns.map((c) => (
                <td key={c.label} class={wide(c)} data-label={c.label}>
                  {c.cell(row)}
                </td>
              ))}
            </tr>
          ))}
          {rows.length === 0 && (
            <tr>
              <td colSpan={columns.length} class="muted">
                {props.empty}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

type Condition = { type: string; status: string; reason?: string; message?: string };

/** A resource's status conditions, one a line: type, status, (reason): message. */
export function Conditions({ of }: { of: Record<string, unknown>[] }) {
  const conditions = of as Condition[];
  if (conditions.length === 0) return null;
  return (
    <ul class="conditions">
      {conditions.map((c) => (
        <li key={c.type}>
          <strong>{c.type}</strong> {c.status}
          {c.reason ? ` (${c.reason})` : ''}
          {c.message ? `: ${c.message}` : ''}
        </li>
      ))}
    </ul>
  );
}
