import { describe, expect, it } from 'vitest';
import { formatOf, imageRequest, type ImageForm } from '../pages/ImageAdd';
import { userRequest } from '../pages/UserForms';
import { accountName, checksum, groups, imageName, imageUrl, password } from './checks';
import { imagesMoving, needsUpload, transfer } from './transfer';

const SUM = 'a'.repeat(64);
const form = (over: Partial<ImageForm>): ImageForm => ({
  name: 'debian-12',
  source: 'http',
  url: 'http://127.0.0.1:8000/d.qcow2',
  checksum: SUM,
  format: 'qcow2',
  prefetch: false,
  prefetchLabels: '',
  ...over,
});

describe('checks mirror the API', () => {
  it('image names are DNS subdomains', () => {
    expect(imageName('debian-12.1')).toBeNull();
    expect(imageName('')).toMatch(/required/);
    expect(imageName('Debian')).toMatch(/lower-case/);
    expect(imageName('-a')).not.toBeNull();
    expect(imageName('a.')).not.toBeNull();
    expect(imageName('a'.repeat(254))).not.toBeNull();
  });
  it('URLs are http or https without spaces; checksums are 64 lower-case hex digits', () => {
    expect(imageUrl('https://x/y.qcow2')).toBeNull();
    expect(imageUrl('ftp://x/y')).not.toBeNull();
    expect(imageUrl('http://x/a b')).not.toBeNull();
    expect(checksum(SUM, true)).toBeNull();
    expect(checksum('', true)).toMatch(/required/);
    expect(checksum('', false)).toBeNull();
    expect(checksum('A'.repeat(64), false)).not.toBeNull();
    expect(checksum('a'.repeat(63), false)).not.toBeNull();
  });
  it('account names, passwords and groups follow useradd and chpasswd', () => {
    expect(accountName('_svc-1')).toBeNull();
    expect(accountName('root')).toBeNull(); // the host refuses existing accounts, not the form
    expect(accountName('1abc')).not.toBeNull();
    expect(accountName('-o')).not.toBeNull();
    expect(accountName('Bob')).not.toBeNull();
    expect(accountName('a'.repeat(33))).not.toBeNull();
    expect(password('12345678', '12345678')).toBeNull();
    expect(password('1234567', '1234567')).toMatch(/8 to 1024/);
    expect(password('12345678\n', '12345678\n')).toMatch(/line breaks/);
    expect(password('12345678', '12345679')).toMatch(/differ/);
    expect(groups(' wheel, docker ,wheel,')).toEqual({ groups: 'wheel,docker', error: null });
    expect(groups('')).toEqual({ groups: '', error: null });
    expect(groups('ok,Bad').error).toMatch(/Group "Bad"/);
  });
});

describe('the forms make the API requests', () => {
  it('an http image with its checksum, and a prefetch only when asked', () => {
    expect(imageRequest(form({ checksum: SUM.toUpperCase() }))).toEqual({
      name: 'debian-12',
      format: 'qcow2',
      source: { http: { url: 'http://127.0.0.1:8000/d.qcow2' } },
      checksum: SUM,
    });
    expect(imageRequest(form({ prefetch: true, prefetchLabels: 'zone=a' })).prefetch).toEqual({
      host_selector: { zone: 'a' },
    });
    expect(imageRequest(form({ prefetch: true })).prefetch).toEqual({ host_selector: {} });
    expect(() => imageRequest(form({ checksum: '' }))).toThrow(/Checksum is required/);
    expect(() => imageRequest(form({ url: 'file:///x' }))).toThrow(/URL/);
  });
  it('an upload image needs no URL or checksum, and ignores the prefetch', () => {
    expect(imageRequest(form({ source: 'upload', url: '', checksum: '', prefetch: true, format: 'raw' }))).toEqual({
      name: 'debian-12',
      format: 'raw',
      source: { upload: {} },
    });
  });
  it('an upload picks the format from the file name when it says one', () => {
    expect(formatOf('debian.QCOW2')).toBe('qcow2');
    expect(formatOf('disk.img')).toBe('raw');
    expect(formatOf('install.iso')).toBe('iso');
    expect(formatOf('archive.tar.gz')).toBeNull();
  });
  it('an account: the first problem is thrown, groups are normalised', () => {
    const user = { username: 'alice', password: 'correct horse', again: 'correct horse', groups: 'audio, video' };
    expect(userRequest(user)).toEqual({ username: 'alice', password: 'correct horse', groups: 'audio,video' });
    expect(() => userRequest({ ...user, username: 'Alice' })).toThrow(/User name/);
    expect(() => userRequest({ ...user, again: 'other' })).toThrow(/differ/);
  });
});

describe('progress', () => {
  it('shows percent, bytes, rate and time left, and never 100% before the end', () => {
    const half = transfer(5 * 2 ** 20, 10 * 2 ** 20, 5);
    expect(half.percent).toBe(50);
    expect(half.label).toBe('50% · 5.00 MiB of 10.0 MiB · 1.00 MiB/s, 5s left');
    expect(transfer(999, 1000, 1).percent).toBe(99);
    expect(transfer(1000, 1000, 1)).toEqual({ percent: 100, label: '100% · 1000 B of 1000 B' });
    expect(transfer(2000, 1000, 1).percent).toBe(100);
    expect(transfer(0, 1000, 0).label).toBe('0% · 0 B of 1000 B');
    expect(transfer(10, 0, 1)).toEqual({ percent: 0, label: '10 B sent' });
  });
  it('an image list moves while a copy is fetched or verified, a fetch is awaited, or a deletion runs', () => {
    const img = (over: object) => ({ phase: 'Ready', deleting: false, fetch_hosts: [], hosts: [], ...over });
    expect(imagesMoving([img({ hosts: [{ phase: 'Ready' }] })])).toBe(false);
    expect(imagesMoving([img({ hosts: [{ phase: 'Fetching' }] })])).toBe(true);
    expect(imagesMoving([img({ hosts: [{ phase: 'Failed' }] })])).toBe(false);
    expect(imagesMoving([img({ fetch_hosts: ['h1'] })])).toBe(true);
    expect(imagesMoving([img({ deleting: true })])).toBe(true);
    expect(imagesMoving([img({ phase: 'Pending' })])).toBe(false); // an upload image waiting for its file
  });
  it('offers Upload… only on an upload image that still needs its file', () => {
    const up = (phase: string, hosts: { host: string; phase: string }[] = []) => ({ source: { upload: {} }, phase, hosts });
    expect(needsUpload(up('Pending'))).toBe(true); // created, no file sent yet (or the upload was cancelled)
    expect(needsUpload(up('Pending', [{ host: 'h1', phase: 'Verifying' }]))).toBe(true);
    expect(needsUpload(up('Failed', [{ host: 'h1', phase: 'Failed' }]))).toBe(true);
    expect(needsUpload(up('Ready', [{ host: 'h1', phase: 'Ready' }]))).toBe(false);
    expect(needsUpload(up('Ready', [{ host: 'h1', phase: 'Ready' }, { host: 'h2', phase: 'Failed' }]))).toBe(true);
    expect(needsUpload({ source: { http: { url: 'https://example.com/a.qcow2' } }, phase: 'Failed', hosts: [] })).toBe(false);
  });
});
