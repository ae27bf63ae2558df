import { describe, expect, it } from 'vitest';
import type { HostView, VMView } from '../api/client';
import { createRequest, parseLabels } from '../pages/VmCreate';
import { bytes, duration, percent, tone } from './format';
import { preflight, progressOf, storageCheck, unfit } from './migrations';
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

describe('the migration host picker', () => {
  const host = (over: Partial<HostView>) =>
    ({ name: 'h2', status: 'connected', maintenance: false, allocatable: { cpu: 4, memory: 8 * 2 ** 30 }, allocated: { cpu: 1, memory: 2 ** 30 }, ...over }) as HostView;
  it('says why a host cannot take the VM', () => {
    const v = vm({ host: 'h1', cpu: 2, memory_bytes: 2 * 2 ** 30 });
    expect(unfit(host({}), v)).toBeNull();
    expect(unfit(host({ name: 'h1' }), v)).toBe('the VM runs here');
    expect(unfit(host({ status: 'disconnected' }), v)).toBe('agent disconnected');
    expect(unfit(host({ maintenance: true }), v)).toBe('in maintenance');
    expect(unfit(host({ allocated: { cpu: 3, memory: 0 } }), v)).toBe('1 vCPU free, the VM needs 2');
    expect(unfit(host({ allocated: { cpu: 0, memory: 7 * 2 ** 30 } }), v)).toBe('1.00 GiB free, the VM needs 2.00 GiB');
  });
});

describe('the pre-flight conditions of a host', () => {
  const hv = (over: object) => ({ arch: 'x86_64', cpu_vendor: 'Intel', cpu_model: 'Skylake', cpu_features: ['sse4.2', 'avx2'], ...over });
  const host = (over: Partial<HostView>) =>
    ({ name: 'h2', status: 'connected', maintenance: false, allocatable: { cpu: 4, memory: 8 * 2 ** 30 }, allocated: { cpu: 1, memory: 2 ** 30 }, hypervisor: hv({}), ...over }) as HostView;
  const v = vm({ host: 'h1', cpu: 1, memory_bytes: 2 ** 30 });

  it('lists every check a host passes, with what it has', () => {
    expect(preflight(host({}), v, host({ name: 'h1' }))).toEqual([
      { name: 'Agent', ok: true, message: 'connected' },
      { name: 'Capacity', ok: true, message: '3 vCPU and 7.00 GiB free' },
      { name: 'CPU', ok: true, message: 'same model (Skylake)' },
      { name: 'Storage', ok: true, message: 'no disks' },
    ]);
  });

  it('refuses a CPU that cannot run the guest, and says what it lacks', () => {
    const source = host({ name: 'h1' });
    expect(unfit(host({ hypervisor: hv({ arch: 'aarch64' }) }), v, source)).toBe('source is x86_64, this host is aarch64');
    expect(unfit(host({ hypervisor: hv({ cpu_vendor: 'AMD' }) }), v, source)).toBe("source CPU is Intel, this host's is AMD");
    expect(unfit(host({ hypervisor: hv({ cpu_model: 'Haswell', cpu_features: ['sse4.2'] }) }), v, source)).toBe(
      "lacks 1 feature(s) of the source's: avx2",
    );
    const covered = preflight(host({ hypervisor: hv({ cpu_model: 'Icelake', cpu_features: ['sse4.2', 'avx2', 'avx512f'] }) }), v, source);
    expect(covered.find((c) => c.name === 'CPU')).toEqual({ name: 'CPU', ok: true, message: "Icelake covers the source's features" });
  });

  it('leaves unknown what the hosts have not reported, without refusing', () => {
    const checks = preflight(host({ hypervisor: null, allocatable: null }), v);
    expect(checks.filter((c) => c.ok === null).map((c) => c.name)).toEqual(['Capacity', 'CPU']);
    expect(unfit(host({ hypervisor: null, allocatable: null }), v)).toBeNull();
  });

  it('needs a storage copy for disks the source host made', () => {
    const shared = { name: 'shared', path: '/srv/a.img' };
    const disks = [{ name: 'root', image: 'debian', size: '10Gi' }, { name: 'seed', image: 'iso', cdrom: true }, shared];
    expect(storageCheck({ ...v, disks }, 'none')).toEqual({ name: 'Storage', ok: false, message: 'root local to the source: copy storage' });
    expect(storageCheck({ ...v, disks }, 'all').ok).toBe(true);
    expect(storageCheck({ ...v, disks: [shared] }, 'none')).toEqual({ name: 'Storage', ok: true, message: 'shared storage' });
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
