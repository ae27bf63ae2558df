// What the VM table needs to decide, kept out of the components so that it is tested alone.

import type { VMView, VmAction } from '../api/client';

export interface Allowed {
  start: boolean;
  stop: boolean;
  restart: boolean;
  migrate: boolean;
}

/** Which power actions make sense in a phase (the gateway refuses the rest with 409). */
export function allowed(vm: Pick<VMView, 'phase' | 'deleting'>): Allowed {
  const phase = vm.phase ?? 'Pending';
  if (vm.deleting) return { start: false, stop: false, restart: false, migrate: false };
  const running = phase === 'Running' || phase === 'Paused';
  return {
    start: phase === 'Stopped' || phase === 'Failed',
    stop: running || phase === 'Starting',
    restart: running,
    migrate: running,
  };
}

/** Seconds until the table looks again: soon while a VM is on its way somewhere, else at rest. */
export function nextPoll(vms: Pick<VMView, 'phase' | 'deleting'>[], pending: number): number {
  const busy = pending > 0 || vms.some((vm) => vm.deleting || !['Running', 'Stopped', 'Failed', 'Paused', 'Unschedulable'].includes(vm.phase ?? 'Pending'));
  return busy ? 1000 : 1500;
}

/** A VM's key in the table (names repeat across namespaces). */
export function vmKey(vm: Pick<VMView, 'name' | 'namespace'>): string {
  return `${vm.namespace}/${vm.name}`;
}

export const ACTION_LABELS: Record<VmAction | 'force-stop', string> = {
  start: 'Start',
  stop: 'Stop',
  'force-stop': 'Force stop',
  restart: 'Restart',
  pause: 'Pause',
  resume: 'Resume',
};

export interface SortState {
  column: 'name' | 'namespace' | 'status' | 'host';
  descending: boolean;
}

export function sortVms<T extends Pick<VMView, 'name' | 'namespace' | 'status' | 'host'>>(vms: T[], sort: SortState): T[] {
  const value = (vm: T) => String(vm[sort.column] ?? '');
  const sorted = [...vms].sort((a, b) => value(a).localeCompare(value(b)) || vmKey(a).localeCompare(vmKey(b)));
  return sort.descending ? sorted.reverse() : sorted;
}

export function filterVms<T extends Pick<VMView, 'name' | 'namespace' | 'status' | 'host' | 'addresses'>>(
  vms: T[],
  text: string,
): T[] {
  const needle = text.trim().toLowerCase();
  if (!needle) return vms;
  return vms.filter((vm) =>
    [vm.name, vm.namespace, vm.status, vm.host ?? '', ...vm.addresses].some((v) => v.toLowerCase().includes(needle)),
  );
}
