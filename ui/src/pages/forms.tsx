// What the write dialogs share: sending the request with a readable error, and the Cancel / submit buttons.

import { useState } from 'preact/hooks';
import { describe } from '../api/errors';

/** Runs a form's request: the error as a readable line, `onDone` with what it says on success. */
export function useSubmit(onDone: (what: string) => void) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const run = async (event: Event, call: () => Promise<string>) => {
    event.preventDefault();
    setError(null);
    setBusy(true);
    try {
      onDone(await call());
    } catch (err) {
      setError(describe(err));
      setBusy(false);
    }
  };
  return { error, busy, run };
}

export function FormButtons({ busy, onClose, submit }: { busy: boolean; onClose: () => void; submit: string }) {
  return (
    <div class="actions full">
      <button type="button" onClick={onClose}>
        Cancel
      </button>
      <button type="submit" class="primary" disabled={busy}>
        {busy ? 'Working…' : submit}
      </button>
    </div>
  );
}
