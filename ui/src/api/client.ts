// Calls to /api/v1 with the session's bearer token; a 401 renews the token once and tries again.
// Every failure becomes an ApiError with the envelope's message.

import type { components, paths } from './schema';
import { errorFrom } from './errors';
import { Session, session as defaultSession } from './session';
import { upload, type OnProgress } from './upload';

type Schemas = components['schemas'];
/** The JSON body an operation takes (quart-schema writes request models inline). */
type Body<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  requestBody?: { content: { 'application/json': infer B } };
}
  ? B
  : never;
export type HostView = Schemas['HostView'];
export type VMView = Schemas['VMView'];
export type CreateVMRequest = Body<'/api/v1/vms', 'post'>;
export type ActionResult = Schemas['ActionResult'];
export type MigrationView = Schemas['MigrationView'];
export type MigrateRequest = Body<'/api/v1/vms/{vm_id}/migrate', 'post'>;
export type CopyStorage = NonNullable<MigrateRequest['copy_storage']>;
export type MigrationTargets = Schemas['MigrationTargets'];
export type PreflightCheck = Schemas['PreflightCheck'];
export type ImageView = Schemas['ImageView'];
export type LogEntry = Schemas['LogEntry'];
export type LogPage = Schemas['LogPage'];
export type VmAction = Body<'/api/v1/vms/{vm_id}/action', 'post'>['action'];
export type CreateImageRequest = Body<'/api/v1/images', 'post'>;
export type CreateUserRequest = Body<'/api/v1/users', 'post'>;
export type CreateContainerRequest = Body<'/api/v1/docker/containers', 'post'>;
export type PullImageRequest = Body<'/api/v1/docker/images/pull', 'post'>;
export type ContainerSummary = Schemas['ContainerSummary'];
export type LinuxUser = Schemas['LinuxUser'];

type Query = Record<string, string | number | boolean | undefined | null>;

export interface RequestOptions {
  query?: Query;
  body?: unknown;
  signal?: AbortSignal;
}

export function withQuery(path: string, query?: Query): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

export class Client {
  constructor(
    private readonly session: Session,
    private readonly fetch: typeof globalThis.fetch = (input, init) => globalThis.fetch(input, init),
  ) {}

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = withQuery(`/api/v1${path}`, options.query);
    let response = await this.send(method, url, options, await this.session.token());
    if (response.status === 401) {
      await this.session.renew();
      response = await this.send(method, url, options, await this.session.token());
    }
    const parsed: unknown = await response.json().catch(() => null);
    if (!response.ok) throw errorFrom(response.status, parsed, response.statusText);
    return (parsed as { data: T }).data;
  }

  private send(method: string, url: string, options: RequestOptions, token: string): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
    if (options.body !== undefined) headers['Content-Type'] = 'application/json';
    return this.fetch(url, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  }

  hosts = () => this.request<Schemas['HostList']>('GET', '/hosts').then((d) => d.hosts);
  host = (id: string) => this.request<HostView>('GET', `/hosts/${encodeURIComponent(id)}`);
  vms = () => this.request<Schemas['VMList']>('GET', '/vms').then((d) => d.vms);
  createVm = (body: CreateVMRequest) => this.request<VMView>('POST', '/vms', { body });
  deleteVm = (vm: VMView) =>
    this.request<Schemas['DeleteResult']>('DELETE', `/vms/${encodeURIComponent(vm.name)}`, {
      query: { namespace: vm.namespace },
    });
  act = (vm: VMView, action: VmAction, force = false) =>
    this.request<ActionResult>('POST', `/vms/${encodeURIComponent(vm.name)}/action`, {
      query: { namespace: vm.namespace, wait: 0 },
      body: { action, force },
    });
  migrate = (vm: VMView, body: MigrateRequest) =>
    this.request<Schemas['MigrationStarted']>('POST', `/vms/${encodeURIComponent(vm.id)}/migrate`, { body });
  /** Every host as the VM's destination, checked by the operator's own pre-flight rules (nothing is created). */
  migrationTargets = (vm: VMView, copy: CopyStorage, signal?: AbortSignal) =>
    this.request<MigrationTargets>('GET', `/vms/${encodeURIComponent(vm.id)}/migration-targets`, {
      query: { copy_storage: copy },
      signal,
    });
  migrations = () => this.request<Schemas['MigrationList']>('GET', '/migrations').then((d) => d.migrations);
  migration = (id: string) => this.request<MigrationView>('GET', `/migrations/${encodeURIComponent(id)}`);
  cancelMigration = (id: string) =>
    this.request<MigrationView>('POST', `/migrations/${encodeURIComponent(id)}/cancel`);
  images = () => this.request<Schemas['ImageList']>('GET', '/images').then((d) => d.images);
  createImage = (body: CreateImageRequest) => this.request<ImageView>('POST', '/images', { body });
  deleteImage = (name: string) =>
    this.request<Schemas['ImageDeleteResult']>('DELETE', `/images/${encodeURIComponent(name)}`);
  /** The file of an upload image to one host, with progress (XMLHttpRequest: fetch cannot report it). */
  uploadImage = (name: string, host: string, file: Blob, onProgress: OnProgress, signal?: AbortSignal) =>
    upload<Schemas['UploadResult']>(
      withQuery(`/images/${encodeURIComponent(name)}/upload`, { host }),
      file,
      onProgress,
      signal,
      this.session,
    );
  logs = (query: Query) => this.request<LogPage>('GET', '/logs', { query });
  containers = (host: string) => this.request<Schemas['ContainerList']>('GET', '/containers', { query: { host } });
  /** Start or stop a Docker container (`stop` gives it the API's default grace period). */
  dockerAct = (host: string, id: string, action: 'start' | 'stop') =>
    this.request<Schemas['ContainerOutcome']>('POST', `/docker/containers/${encodeURIComponent(id)}/${action}`, {
      query: { host },
    });
  dockerRemove = (host: string, id: string) =>
    this.request<Schemas['RemovedContainer']>('DELETE', `/docker/containers/${encodeURIComponent(id)}`, {
      query: { host },
    });
  createContainer = (host: string, body: CreateContainerRequest) =>
    this.request<Schemas['CreatedContainer']>('POST', '/docker/containers', { query: { host }, body });
  pullImage = (host: string, body: PullImageRequest) =>
    this.request<Schemas['PulledImage']>('POST', '/docker/images/pull', { query: { host }, body });
  createUser = (host: string, body: CreateUserRequest) =>
    this.request<Schemas['CreatedUser']>('POST', '/users', { query: { host }, body });
  resetPassword = (host: string, username: string, password: string) =>
    this.request<Schemas['PasswordReset']>('POST', `/users/${encodeURIComponent(username)}/reset-password`, {
      query: { host },
      body: { password },
    });
  users = (host: string) => this.request<Schemas['UserList']>('GET', '/users', { query: { host } }).then((d) => d.users);
}

export const api = new Client(defaultSession);
