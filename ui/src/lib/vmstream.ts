// The VM list kept current by /ws/vms: a sync replaces it, each change is applied in place. Kept out of the
// components so that it is tested alone (vmstream.test.ts).

import type { components } from '../api/schema';
import type { VMView } from '../api/client';
import { vmKey } from './vms';

export type VmSync = components['schemas']['VMStreamSync'];
export type VmChange = components['schemas']['VMStreamChange'];
export type VmMessage = VmSync | VmChange;

/** Is a socket message one of /ws/vms's (a sync or a change)? */
export function isVmMessage(message: Record<string, unknown>): message is VmMessage {
  return message.type === 'sync' || (message.type === 'vm' && typeof message.vm === 'object' && message.vm !== null);
}

/**
 * The list after some changes, in order. Untouched VMs keep their objects (a memoized row of theirs is not drawn
 * again); a changed VM takes its old place, a new one goes last, and a delete removes the VM of that id only (a
 * VM made again under the same name meanwhile stays). Returns the same array when nothing changed.
 */
export function applyChanges(vms: VMView[], changes: VmChange[]): VMView[] {
  if (changes.length === 0) return vms;
  const index = new Map(vms.map((vm, i) => [vmKey(vm), i]));
  let next: (VMView | null)[] | null = null;
  for (const change of changes) {
    const list: (VMView | null)[] = (next ??= [...vms]);
    const key = vmKey(change.vm);
    const at = index.get(key);
    if (change.event === 'DELETED') {
      if (at !== undefined && list[at]?.id === change.vm.id) {
        list[at] = null;
        index.delete(key);
      }
    } else if (at !== undefined) {
      list[at] = change.vm;
    } else {
      index.set(key, list.length);
      list.push(change.vm);
    }
  }
  return next ? next.filter((vm): vm is VMView => vm !== null) : vms;
}
