import { describe, expect, it } from 'vitest';
import { containerRequest, parsePorts, pullRequest } from './docker';

const form = (over: object) => ({ image: 'nginx:latest', name: '', env: '', ports: '', ...over });

describe('the Docker forms check what vapor.agentapi.dockerspec checks', () => {
  it('image references: registry, port, path, tag, digest; lower-case paths', () => {
    for (const image of ['nginx', 'nginx:1.27', '127.0.0.1:5000/team/app:v1', 'a/b@sha256:' + 'ab'.repeat(16)])
      expect(containerRequest(form({ image })).image).toBe(image);
    for (const image of ['', 'Nginx', 'nginx:', 'a//b', '-x', 'nginx:latest extra'])
      expect(() => containerRequest(form({ image }))).toThrow(/Image/);
  });
  it('names, environment lines and an optional name left out', () => {
    expect(containerRequest(form({ name: ' web-1 ', env: 'A=1\n\n B_2=x=y \n' }))).toEqual({
      image: 'nginx:latest',
      name: 'web-1',
      env: ['A=1', 'B_2=x=y'],
      portBindings: {},
    });
    expect(containerRequest(form({})).name).toBeUndefined();
    expect(() => containerRequest(form({ name: 'a' }))).toThrow(/Name/);
    expect(() => containerRequest(form({ name: '-ab' }))).toThrow(/Name/);
    expect(() => containerRequest(form({ env: '=x' }))).toThrow(/NAME=value/);
    expect(() => containerRequest(form({ env: '1A=x' }))).toThrow(/NAME=value/);
    expect(() => containerRequest(form({ env: 'NOVALUE' }))).toThrow(/NAME=value/);
  });
  it('port lines as docker run -p writes them, several host ports per container port', () => {
    expect(parsePorts('8080:80\n127.0.0.1:5353:53/udp\n8081:80/tcp\n[::1]:9000:9000')).toEqual({
      '80/tcp': [{ hostPort: '8080' }, { hostPort: '8081' }],
      '53/udp': [{ hostPort: '5353', hostIp: '127.0.0.1' }],
      '9000/tcp': [{ hostPort: '9000', hostIp: '::1' }],
    });
    expect(() => parsePorts('80')).toThrow(/HOSTPORT:PORT/);
    expect(() => parsePorts('0:80')).toThrow(/Host port 0 is out of range/);
    expect(() => parsePorts('8080:70000')).toThrow(/Container port/);
    expect(() => parsePorts('8080:80/icmp')).toThrow(/HOSTPORT:PORT/);
  });
  it('a pull: repository without a tag, the tag apart (latest when empty)', () => {
    expect(pullRequest({ imageName: ' registry:5000/team/app ', tag: '' })).toEqual({
      imageName: 'registry:5000/team/app',
      tag: 'latest',
    });
    expect(() => pullRequest({ imageName: 'nginx:1.27', tag: 'x' })).toThrow(/without a tag/);
    expect(() => pullRequest({ imageName: 'nginx', tag: '.bad' })).toThrow(/Tag/);
  });
});
