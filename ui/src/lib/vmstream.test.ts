import { describe, expect, it } from 'vitest';
import type { VMView } from '../api/client';
import { applyChanges, isVmMessage, type VmChange } from './vmstream';

const vm = (name: string, over: Partial<VMView> = {}) =>
  ({ id: `id-${name}`, name, namespace: 'default', status: 'Stopped', phase: 'Stopped', addresses: [], ...over }) as VMView;
const change = (event: VmChange['event'], v: VMView): VmChange => ({ type: 'vm', event, vm: v });

describe('the VM stream', () => {
  it('changes one VM in place and keeps the others as they were', () => {
    const list = [vm('a'), vm('b'), vm('c')];
    const next = applyChanges(list, [change('MODIFIED', vm('b', { status: 'Running', phase: 'Running' }))]);
    expect(next.map((v) => v.status)).toEqual(['Stopped', 'Running', 'Stopped']);
    expect(next[0]).toBe(list[0]); // untouched rows keep their object: their memoized rows are not drawn again
    expect(next[2]).toBe(list[2]);
    expect(list[1]?.status).toBe('Stopped'); // the old list is not changed under its readers
  });

  it('adds new VMs last and removes deleted ones', () => {
    const list = [vm('a'), vm('b')];
    const next = applyChanges(list, [change('ADDED', vm('z')), change('DELETED', vm('a'))]);
    expect(next.map((v) => v.name)).toEqual(['b', 'z']);
  });

  it('tells namespaces apart and applies a burst in order', () => {
    const list = [vm('a'), vm('a', { namespace: 'prod', id: 'id-prod-a' })];
    const next = applyChanges(list, [
      change('MODIFIED', vm('a', { namespace: 'prod', id: 'id-prod-a', status: 'Paused' })),
      change('MODIFIED', vm('a', { namespace: 'prod', id: 'id-prod-a', status: 'Running' })),
    ]);
    expect(next.map((v) => `${v.namespace}/${v.status}`)).toEqual(['default/Stopped', 'prod/Running']);
  });

  it('ignores a delete of an older VM of the same name', () => {
    const remade = vm('a', { id: 'id-new' });
    const next = applyChanges([vm('a')], [change('DELETED', vm('a')), change('ADDED', remade)]);
    expect(next).toEqual([remade]);
    expect(applyChanges([remade], [change('DELETED', vm('a'))])).toEqual([remade]);
  });

  it('a change to a VM it never saw is an add; nothing to apply keeps the same list', () => {
    const list = [vm('a')];
    expect(applyChanges(list, [])).toBe(list);
    expect(applyChanges(list, [change('MODIFIED', vm('b'))]).map((v) => v.name)).toEqual(['a', 'b']);
  });

  it('knows its messages', () => {
    expect(isVmMessage({ type: 'sync', data: { vms: [], count: 0 } })).toBe(true);
    expect(isVmMessage({ type: 'vm', event: 'ADDED', vm: vm('a') })).toBe(true);
    expect(isVmMessage({ type: 'metric' })).toBe(false);
  });
});
