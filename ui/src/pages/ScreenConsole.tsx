// The VM's graphical console in noVNC (loaded only when it is opened): our WebSocket authenticates and
// subscribes, then noVNC speaks RFB over the same socket.

import RFB from '@novnc/novnc';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { VMView } from '../api/client';
import { ConsoleSession } from '../api/console';
import { session } from '../api/session';
import { ErrorBanner, Modal } from '../ui';

export default function ScreenConsole({ vm, onClose }: { vm: VMView; onClose: () => void }) {
  const box = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | null>(null);
  const [ended, setEnded] = useState<string | null>(null);
  const [connected, setConnected] = useState(false);

  useEffect(() => {
    let live: ConsoleSession | null = null;
    let closed = false;
    void session.token().then((token) => {
      if (closed || !box.current) return;
      live = new ConsoleSession(
        { vm, kind: 'vnc', token, force: false },
        {
          onReady: (socket) => {
            if (!box.current) return;
            const client = new RFB(box.current, socket);
            client.scaleViewport = true;
            client.addEventListener('connect', () => setConnected(true));
            client.addEventListener('disconnect', () => setConnected(false));
            client.focus();
            rfb.current = client;
          },
          onEnd: (reason) => !closed && setEnded(reason),
        },
      );
    });
    return () => {
      closed = true;
      rfb.current?.disconnect();
      live?.close();
    };
  }, [vm.id]);

  return (
    <Modal title={`Screen of ${vm.name}`} onClose={onClose} wide>
      <div ref={box} class="screen" aria-label="Graphical console" />
      <p class="muted" role="status">
        {ended ? 'Disconnected.' : connected ? 'Connected: keys typed here go to the VM.' : 'Connecting…'}
      </p>
      <ErrorBanner error={ended} />
      <div class="actions">
        <button type="button" onClick={() => rfb.current?.sendCtrlAltDel()} disabled={!connected}>
          Send Ctrl+Alt+Del
        </button>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
    </Modal>
  );
}
