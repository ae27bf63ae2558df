// What the write dialogs share: sending the request with a readable error, and the Cancel / submit buttons.

import { useState } from 'preact/hooks';
import { describe } from '../api/errors';
import { ErrorBanner } from '../ui';

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

/** The end of a dialog's form: the request's error (readable), then Cancel and the submit button. */
export function FormEnd(props: {
  error: string | null;
  busy: boolean;
  onClose: () => void;
  submit: string;
  /** the submit button's text while the request runs */
  working?: string;
}) {
  const { busy, onClose, submit } = props;
  return (
    <>
      <div class="full">
        <ErrorBanner error={props.error} />
      </div>
      <div class="actions full">
        <button type="button" onClick={onClose}>
          Cancel
        </button>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? (props.working ?? 'Working…') : submit}
        </button>
      </div>
    </>
  );
}
