// The VM list, live: /ws/vms keeps it (a sync, then each change applied in place, a burst at once per task);
// while that socket is not there (still opening after STREAM_WAIT ms, dropped, refused) GET /vms is polled as
// before, and a socket that gave up is opened again after REOPEN ms.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, type VMView } from '../api/client';
import { openStream } from '../api/socket';
import { usePoll } from './poll';
import { applyChanges, isVmMessage, type VmChange } from './vmstream';

const STREAM_WAIT = 3000;
const REOPEN = 10000;

export type LiveMode = 'connecting' | 'live' | 'polling';

export interface LiveVms {
  data: VMView[] | undefined;
  error: string | null;
  refresh: () => void;
  mode: LiveMode;
}

export function useLiveVms(every: number, sooner: (vms: VMView[]) => number | null): LiveVms {
  const [data, setData] = useState<VMView[]>();
  const [mode, setMode] = useState<LiveMode>('connecting');
  const modeRef = useRef(mode);
  modeRef.current = mode;
  const polled = usePoll(api.vms, every, sooner, mode !== 'polling');

  useEffect(() => {
    if (polled.data && modeRef.current === 'polling') setData(polled.data);
  }, [polled.data]);

  const reopenings = useRef(0);
  const open = useCallback(() => {
    let pending: VmChange[] = [];
    let flush: ReturnType<typeof setTimeout> | undefined;
    const stream = openStream('/ws/vms', {}, {}, {
      onMessage(message) {
        if (!isVmMessage(message)) return;
        if (message.type === 'sync') {
          pending = [];
          setData(message.data.vms);
          setMode('live');
          return;
        }
        pending.push(message);
        flush ??= setTimeout(() => {
          const changes = pending;
          pending = [];
          flush = undefined;
          setData((old) => (old ? applyChanges(old, changes) : old));
        }, 0);
      },
      onClose(retrying) {
        setMode('polling');
        if (!retrying) reopenings.current = window.setTimeout(() => setReopen((n) => n + 1), REOPEN);
      },
      onError() {
        setMode('polling');
      },
    });
    const waited = setTimeout(() => modeRef.current === 'connecting' && setMode('polling'), STREAM_WAIT);
    return () => {
      clearTimeout(waited);
      clearTimeout(flush);
      stream.close();
    };
  }, []);
  const [reopen, setReopen] = useState(0);
  useEffect(() => {
    const close = open();
    return () => {
      clearTimeout(reopenings.current);
      close();
    };
  }, [open, reopen]);

  return { data, error: mode === 'live' ? null : polled.error, refresh: polled.refresh, mode };
}
