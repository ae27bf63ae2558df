// The VM's serial console in xterm.js (loaded only when a console is opened).

import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { VMView } from '../api/client';
import { ConsoleSession } from '../api/console';
import { session } from '../api/session';
import { ErrorBanner, Modal } from '../ui';

export default function SerialConsole({ vm, onClose }: { vm: VMView; onClose: () => void }) {
  const box = useRef<HTMLDivElement>(null);
  const [ended, setEnded] = useState<{ reason: string; code: number } | null>(null);
  const [force, setForce] = useState(false);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    if (!box.current) return;
    const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(box.current);
    fit.fit();
    let live: ConsoleSession | null = null;
    let closed = false;
    setEnded(null);
    void session.token().then((token) => {
      if (closed) return;
      live = new ConsoleSession(
        { vm, kind: 'console', token, force, cols: term.cols, rows: term.rows },
        {
          onReady: () => term.focus(),
          onData: (bytes) => term.write(bytes),
          onEnd: (reason, code) => !closed && setEnded({ reason, code }),
        },
      );
    });
    const input = term.onData((data) => live?.send(data));
    const resized = term.onResize(({ cols, rows }) => live?.resize(cols, rows));
    const onWindow = () => fit.fit();
    addEventListener('resize', onWindow);
    return () => {
      closed = true;
      removeEventListener('resize', onWindow);
      input.dispose();
      resized.dispose();
      live?.close();
      term.dispose();
    };
  }, [vm.id, attempt]);

  return (
    <Modal title={`Serial console of ${vm.name}`} onClose={onClose} wide>
      <div ref={box} class="terminal" aria-label="Serial console" />
      <ErrorBanner error={ended?.reason ?? null} />
      <div class="actions">
        {ended?.code === 4409 && (
          <button
            type="button"
            onClick={() => {
              setForce(true);
              setAttempt((n) => n + 1);
            }}
          >
            Take it over
          </button>
        )}
        {ended && ended.code !== 4409 && (
          <button type="button" onClick={() => setAttempt((n) => n + 1)}>
            Reconnect
          </button>
        )}
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
    </Modal>
  );
}
