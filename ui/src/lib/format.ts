// Numbers as people read them.

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function bytes(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  let n = Math.abs(value);
  let unit = 0;
  while (n >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || n >= 100 ? 0 : n >= 10 ? 1 : 2;
  return `${value < 0 ? '-' : ''}${n.toFixed(digits)} ${UNITS[unit]}`;
}

export function percent(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  return `${value < 10 ? value.toFixed(1) : Math.round(value)}%`;
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

/** The CSS class of a status word: ok (green), busy (amber), bad (red) or idle (grey). */
export function tone(status: string | null | undefined): 'ok' | 'busy' | 'bad' | 'idle' {
  switch (status) {
    case 'Running':
    case 'connected':
    case 'Ready':
    case 'Succeeded':
    case 'Mounted':
    case 'CONTAINER_RUNNING':
      return 'ok';
    case 'Failed':
    case 'Unschedulable':
    case 'disconnected':
    case 'Refused':
    case 'Error':
      return 'bad';
    case 'Stopped':
    case 'Cancelled':
    case 'unknown':
    case 'CONTAINER_CREATED':
    case 'CONTAINER_EXITED':
    case 'CONTAINER_UNKNOWN':
    case undefined:
    case null:
      return 'idle';
    default:
      return 'busy';
  }
}

/** A VM phase that is on its way somewhere: the table looks again sooner while one is shown. */
export function moving(phase: string | null | undefined): boolean {
  return tone(phase) === 'busy';
}
