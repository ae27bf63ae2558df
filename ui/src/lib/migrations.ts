// What the migration pages decide: whether a migration has finished, and how far it has come, in words. Whether a
// host can take a VM is the operator's to say: the Migrate dialog shows GET /vms/{id}/migration-targets.

import type { MigrationView } from '../api/client';
import { bytes } from './format';

export const FINISHED = ['Succeeded', 'Failed', 'Cancelled'];

export function finished(phase: string): boolean {
  return FINISHED.includes(phase);
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
