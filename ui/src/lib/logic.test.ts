import { describe, expect, it } from 'vitest';
import type { VMView } from '../api/client';
import { createRequest, parseLabels } from '../pages/VmCreate';
import { bytes, duration, percent, tone } from './format';
import { progressOf } from './migrations';
import { href, parse } from './router';
import { allowed, filterVms, nextPoll, sortVms } from './vms';

const vm = (over: Partial<VMView>) =>
  ({ name: 'a', namespace: 'default', status: 'Stopped', phase: 'Stopped', host: 'h1', addresses: [], deleting: false, cpu: 1, memory_bytes: 2 ** 30, ...over }) as VMView;

describe('formatting', () => {
  it('writes sizes, percents and durations as people read them', () => {
    expect(bytes(0)).toBe('0 B');
    expect(bytes(1536)).toBe('1.50 KiB');
    expect(bytes(32 * 1024 ** 3)).toBe('32.0 GiB');
    expect(bytes(null)).toBe('—');
    expect(percent(3.14159)).toBe('3.1%');
    expect(percent(42.6)).toBe('43%');
    expect(duration(90061)).toBe('1d 1h');
    expect(duration(59)).toBe('59s');
    expect(tone('Running')).toBe('ok');
    expect(tone('Migrating')).toBe('busy');
    expect(tone('Failed')).toBe('bad');
  });
});

describe('routes', () => {
  it('round-trip through the fragment', () => {
    expect(parse('#/hosts/abc%20d')).toEqual({ page: 'host', id: 'abc d' });
    expect(href({ page: 'host', id: 'abc d' })).toBe('#/hosts/abc%20d');
    expect(parse('')).toEqual({ page: 'vms' });
    expect(parse('#/nonsense')).toEqual({ page: 'vms' });
    expect(parse('#/migrations')).toEqual({ page: 'migrations' });
  });
});

describe('the VM table', () => {
  it('offers only the actions a phase allows', () => {
    expect(allowed(vm({ phase: 'Stopped' }))).toEqual({ start: true, stop: false, restart: false, migrate: false });
    expect(allowed(vm({ phase: 'Running' }))).toEqual({ start: false, stop: true, restart: true, migrate: true });
    expect(allowed(vm({ phase: 'Running', deleting: true })).stop).toBe(false);
  });

  it('looks again within a second while a VM moves or an action is pending', () => {
    expect(nextPoll([vm({ phase: 'Running' })], 0)).toBe(1500);
    expect(nextPoll([vm({ phase: 'Starting' })], 0)).toBe(1000);
    expect(nextPoll([vm({ phase: 'Running' })], 1)).toBe(1000);
  });

  it('sorts and filters', () => {
    const vms = [vm({ name: 'b', status: 'Running' }), vm({ name: 'a', addresses: ['10.0.0.7'] }), vm({ name: 'c', namespace: 'x' })];
    expect(sortVms(vms, { column: 'name', descending: true }).map((v) => v.name)).toEqual(['c', 'b', 'a']);
    expect(filterVms(vms, '10.0.0').map((v) => v.name)).toEqual(['a']);
    expect(filterVms(vms, 'RUN').map((v) => v.name)).toEqual(['b']);
  });
});

describe('the create form', () => {
  const blank = { name: ' web ', namespace: '', cpu: '2', memory: '1Gi', image: '', diskSize: '', sshKey: '', userData: '', network: '', hostLabels: '', start: false };
  it('makes the smallest request', () => {
    expect(createRequest(blank)).toEqual({ name: 'web', namespace: 'default', cpu: 2, memory: '1Gi', run_strategy: 'Halted' });
  });
  it('adds an image disk, a network, keys and user-data', () => {
    const r = createRequest({ ...blank, image: 'debian', diskSize: '10Gi', network: 'default', sshKey: 'ssh-ed25519 AAA a\n\n', userData: '#cloud-config\n', start: true });
    expect(r.disks).toEqual([{ name: 'root', image: 'debian', size: '10Gi' }]);
    expect(r.networks).toEqual([{ name: 'nic0', type: 'network', source: 'default' }]);
    expect(r.cloud_init).toEqual({ ssh_authorized_keys: ['ssh-ed25519 AAA a'], user_data: '#cloud-config\n' });
    expect(r.run_strategy).toBe('Running');
  });
  it('reads host labels as a selector and refuses a malformed pair', () => {
    expect(createRequest({ ...blank, hostLabels: 'zone=a, rack=3' }).host_selector).toEqual({ zone: 'a', rack: '3' });
    expect(parseLabels('')).toEqual({});
    expect(() => parseLabels('zone')).toThrow('"zone" is not key=value');
  });
});

describe('a migration in words', () => {
  const m = (over: object) => ({ phase: 'Running', progress: null, downtime_ms: null, ...over }) as Parameters<typeof progressOf>[0];
  const progress = (percent: number, data_remaining: number | null) =>
    ({ percent, data_remaining, data_total: data_remaining === null ? null : 80 * 2 ** 20, data_processed: null, memory_iteration: null, memory_dirty_rate: null, updated_at: null });

  it('says how far the copy has come and what is left while it runs', () => {
    expect(progressOf(m({ phase: 'Pending' }))).toEqual({ value: 0, text: '0%' });
    expect(progressOf(m({ progress: progress(42, 3 * 2 ** 20) }))).toEqual({ value: 42, text: '42%, 3.00 MiB left' });
    // the agent's first report, before libvirt has statistics: no total, so nothing is said to be left
    expect(progressOf(m({ progress: { ...progress(0, 0), data_total: 0 } }))).toEqual({ value: 0, text: '0%' });
  });

  it('gives the downtime at the end, and full for a success whatever the last report said', () => {
    expect(progressOf(m({ phase: 'Succeeded', progress: progress(97, 4096), downtime_ms: 31 }))).toEqual({ value: 100, text: '100%, downtime 31 ms' });
    expect(progressOf(m({ phase: 'Cancelled', progress: progress(63, 2 ** 20) }))).toEqual({ value: 63, text: '63%' });
  });
});
