// Keep a list fresh without reloads: ask again after `every` ms (sooner while something moves), never two
// requests at once, and not while the tab is hidden or `paused` (a live stream keeps the list then).

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { describe } from '../api/errors';

export interface Polled<T> {
  data: T | undefined;
  error: string | null;
  refresh: () => void;
}

export function usePoll<T>(
  load: () => Promise<T>,
  every: number,
  sooner?: (data: T) => number | null,
  paused = false,
): Polled<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string | null>(null);
  const timer = useRef<ReturnType<typeof setTimeout>>();
  const live = useRef(true);
  const busy = useRef(false);
  const loadRef = useRef(load);
  loadRef.current = load;
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  const tick = useCallback(async () => {
    clearTimeout(timer.current);
    if (!live.current || pausedRef.current) return;
    let wait = every;
    if (!busy.current && document.visibilityState !== 'hidden') {
      busy.current = true;
      try {
        const fresh = await loadRef.current();
        if (!live.current) return;
        setData(fresh);
        setError(null);
        wait = (sooner && sooner(fresh)) || every;
      } catch (err) {
        if (live.current) setError(describe(err));
      } finally {
        busy.current = false;
      }
    }
    if (live.current) timer.current = setTimeout(tick, wait);
  }, [every, sooner]);

  useEffect(() => {
    live.current = true;
    void tick();
    const onVisible = () => document.visibilityState === 'visible' && void tick();
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      live.current = false;
      clearTimeout(timer.current);
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [tick]);

  useEffect(() => {
    if (!paused) void tick(); // at once when the stream that kept the list is gone
  }, [paused]);

  return { data, error, refresh: () => void tick() };
}
