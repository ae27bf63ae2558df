// What the migration pages decide: whether a host can take a VM (the operator's pre-flight checks, as far as
// the hosts' reports tell), and how far a migration has come, in words.

import type { HostView, MigrationView, VMView } from '../api/client';
import { bytes } from './format';

export const FINISHED = ['Succeeded', 'Failed', 'Cancelled'];

export function finished(phase: string): boolean {
  return FINISHED.includes(phase);
}

/** One pre-flight condition of a host for a VM: ok true (passes), false (refused) or null (not known yet). */
export interface Check {
  name: string;
  ok: boolean | null;
  message: string;
}

export type CopyStorage = 'none' | 'all' | 'incremental';
type MovingVm = Pick<VMView, 'host' | 'cpu' | 'memory_bytes'> & { disks?: Record<string, unknown>[] };
type Resources = { cpu?: number; memory?: number } | null;
type Hypervisor = { arch?: string; cpu_model?: string; cpu_vendor?: string; cpu_features?: string[] } | null;

function capacity(host: HostView, vm: MovingVm): Check {
  const free = (key: 'cpu' | 'memory') => {
    const total = (host.allocatable as Resources)?.[key];
    return total === undefined ? undefined : total - ((host.allocated as Resources)?.[key] ?? 0);
  };
  const cpu = free('cpu');
  const memory = free('memory');
  if (cpu === undefined || memory === undefined) return { name: 'Capacity', ok: null, message: 'not reported yet' };
  if (cpu < vm.cpu) return { name: 'Capacity', ok: false, message: `${cpu} vCPU free, the VM needs ${vm.cpu}` };
  if (memory < vm.memory_bytes)
    return { name: 'Capacity', ok: false, message: `${bytes(memory)} free, the VM needs ${bytes(vm.memory_bytes)}` };
  return { name: 'Capacity', ok: true, message: `${cpu} vCPU and ${bytes(memory)} free` };
}

/** Whether a guest running on the source's CPU can run on the host's (architecture, vendor, features). */
function cpuCompatible(host: HostView, source: HostView | undefined): Check {
  const src = source?.hypervisor as Hypervisor;
  const dst = host.hypervisor as Hypervisor;
  if (!src?.cpu_model || !dst?.cpu_model) return { name: 'CPU', ok: null, message: 'CPU model not reported yet' };
  if (src.arch && dst.arch && src.arch !== dst.arch)
    return { name: 'CPU', ok: false, message: `source is ${src.arch}, this host is ${dst.arch}` };
  if (src.cpu_vendor && dst.cpu_vendor && src.cpu_vendor !== dst.cpu_vendor)
    return { name: 'CPU', ok: false, message: `source CPU is ${src.cpu_vendor}, this host's is ${dst.cpu_vendor}` };
  const have = new Set(dst.cpu_features ?? []);
  const missing = (src.cpu_features ?? []).filter((f) => !have.has(f));
  if (missing.length)
    return { name: 'CPU', ok: false, message: `lacks ${missing.length} feature(s) of the source's: ${missing.slice(0, 5).join(', ')}` };
  return { name: 'CPU', ok: true, message: src.cpu_model === dst.cpu_model ? `same model (${dst.cpu_model})` : `${dst.cpu_model} covers the source's features` };
}

/** Whether the VM's disks can follow it: a disk the source's agent made (size or image) needs a storage copy. */
export function storageCheck(vm: MovingVm, copy: CopyStorage): Check {
  const disks = vm.disks ?? [];
  if (disks.length === 0) return { name: 'Storage', ok: true, message: 'no disks' };
  if (copy !== 'none') return { name: 'Storage', ok: true, message: `${disks.length} disk(s) copied` };
  const local = disks.filter((d) => d.size != null || (d.image != null && !d.cdrom)).map((d) => String(d.name));
  if (local.length) return { name: 'Storage', ok: false, message: `${local.join(', ')} local to the source: copy storage` };
  return { name: 'Storage', ok: true, message: 'shared storage' };
}

/** The pre-flight conditions of ``host`` for moving ``vm`` there from ``source``, in the order they are checked. */
export function preflight(host: HostView, vm: MovingVm, source?: HostView, copy: CopyStorage = 'none'): Check[] {
  if (host.name === vm.host) return [{ name: 'Host', ok: false, message: 'the VM runs here' }];
  const checks: Check[] = [
    {
      name: 'Agent',
      ok: host.status === 'connected',
      message: host.status === 'connected' ? 'connected' : `agent ${host.status}`,
    },
  ];
  if (host.maintenance) checks.push({ name: 'Maintenance', ok: false, message: 'in maintenance' });
  checks.push(capacity(host, vm), cpuCompatible(host, source), storageCheck(vm, copy));
  return checks;
}

/** Why a host cannot take the VM now (the first refused check), or null when nothing refuses it. */
export function unfit(host: HostView, vm: MovingVm, source?: HostView, copy: CopyStorage = 'none'): string | null {
  const refused = preflight(host, vm, source, copy).find((c) => c.ok === false);
  return refused ? refused.message : null;
}

/** How far a migration has come: the bar's value and its words (percent, data left while it runs, downtime at the end). */
export function progressOf(m: Pick<MigrationView, 'phase' | 'progress' | 'downtime_ms'>): { value: number; text: string } {
  const value = m.phase === 'Succeeded' ? 100 : (m.progress?.percent ?? 0);
  const parts = [`${value}%`];
  const left = m.progress?.data_remaining;
  // before libvirt's first statistics the job has no total: nothing is known to be left
  if (!finished(m.phase) && left != null && m.progress?.data_total) parts.push(`${bytes(left)} left`);
  if (m.downtime_ms != null) parts.push(`downtime ${m.downtime_ms} ms`);
  return { value, text: parts.join(', ') };
}
