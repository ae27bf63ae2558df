// The Docker forms' rules, as vapor.agentapi.dockerspec states them (the gateway and the agent check again):
// image references, container names, NAME=value environment lines, and `docker run -p`-style port lines.

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]{1,5})?`;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const NAME = `(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const TAG = '[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const IMAGE_REFERENCE = new RegExp(`^${NAME}(?::${TAG})?(?:@${DIGEST})?$`);
const IMAGE_NAME = new RegExp(`^${NAME}$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const CONTAINER_NAME = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]{1,127}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const PORT_LINE = /^(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?([0-9]{1,5}):([0-9]{1,5})(?:\/(tcp|udp|sctp))?$/;

export type PortBindings = Record<string, { hostPort: string; hostIp?: string }[]>;

export interface CreateContainer {
  image: string;
  name?: string;
  env: string[];
  portBindings: PortBindings;
}

function lines(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

function port(text: string, what: string): string {
  const n = Number(text);
  if (!(n >= 1 && n <= 65535)) throw new Error(`${what} ${text} is out of range: a port is 1 to 65535.`);
  return String(n);
}

/** Lines of HOSTPORT:PORT[/proto] or HOSTIP:HOSTPORT:PORT[/proto] as the API's portBindings. */
export function parsePorts(text: string): PortBindings {
  const bindings: PortBindings = {};
  for (const line of lines(text)) {
    const m = PORT_LINE.exec(line);
    if (!m) throw new Error(`Ports: "${line}" must read HOSTPORT:PORT[/tcp|udp|sctp], e.g. 8080:80/tcp.`);
    const [, ip, hostPort = '', containerPort = '', proto = 'tcp'] = m;
    const key = `${port(containerPort, 'Container port')}/${proto}`;
    const binding = { hostPort: port(hostPort, 'Host port'), ...(ip ? { hostIp: ip.replace(/^\[|\]$/g, '') } : {}) };
    (bindings[key] ??= []).push(binding);
  }
  return bindings;
}

/** The body of POST /docker/containers from the form, or the first thing to fix. */
export function containerRequest(form: { image: string; name: string; env: string; ports: string }): CreateContainer {
  const image = form.image.trim();
  if (!IMAGE_REFERENCE.test(image) || image.length > 512)
    throw new Error('Image: [registry[:port]/]name[:tag], lower-case, e.g. nginx:latest (it must be on the host).');
  const name = form.name.trim();
  if (name && !CONTAINER_NAME.test(name))
    throw new Error('Name: a letter or digit, then letters, digits, "_", "." or "-" (2 to 128 characters).');
  const env = lines(form.env);
  for (const entry of env) {
    const at = entry.indexOf('=');
    if (at <= 0 || !ENV_NAME.test(entry.slice(0, at)))
      throw new Error(`Environment: "${entry.slice(0, 60)}" must read NAME=value.`);
  }
  return { image, ...(name ? { name } : {}), env, portBindings: parsePorts(form.ports) };
}

/** The body of POST /docker/images/pull, or the first thing to fix. */
export function pullRequest(form: { imageName: string; tag: string }): { imageName: string; tag: string } {
  const imageName = form.imageName.trim();
  const tag = form.tag.trim() || 'latest';
  if (!IMAGE_NAME.test(imageName) || imageName.length > 255)
    throw new Error('Image: [registry[:port]/]name without a tag (the tag has its own field), lower-case.');
  if (!TAG_RE.test(tag)) throw new Error('Tag: letters, digits, "_", "." and "-" (at most 128), e.g. latest.');
  return { imageName, tag };
}
