import { useEffect, useState } from 'preact/hooks';
import { api, type CreateVMRequest, type ImageView, type VMView } from '../api/client';
import { describe } from '../api/errors';
import { Modal } from '../ui';
import { FormEnd } from './forms';

/** `key=value` pairs separated by commas or spaces (a host selector); a malformed pair is an error to show. */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of text.split(/[\s,]+/).filter(Boolean)) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new Error(`Host labels: "${pair}" is not key=value`);
    labels[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return labels;
}

/** The request a filled-in form makes (exported for the unit tests). */
export function createRequest(form: {
  name: string;
  namespace: string;
  cpu: string;
  memory: string;
  image: string;
  diskSize: string;
  sshKey: string;
  userData: string;
  network: string;
  hostLabels: string;
  start: boolean;
}): CreateVMRequest {
  const request: CreateVMRequest = {
    name: form.name.trim(),
    namespace: form.namespace.trim() || 'default',
    cpu: Number.parseInt(form.cpu, 10),
    memory: form.memory.trim(),
    run_strategy: form.start ? 'Running' : 'Halted',
  };
  if (form.image) request.disks = [{ name: 'root', image: form.image, ...(form.diskSize.trim() ? { size: form.diskSize.trim() } : {}) }];
  else if (form.diskSize.trim()) request.disks = [{ name: 'root', size: form.diskSize.trim() }];
  const selector = parseLabels(form.hostLabels);
  if (Object.keys(selector).length) request.host_selector = selector;
  if (form.network.trim()) request.networks = [{ name: 'nic0', type: 'network', source: form.network.trim() }];
  const keys = form.sshKey
    .split('\n')
    .map((k) => k.trim())
    .filter(Boolean);
  if (keys.length || form.userData.trim()) {
    request.cloud_init = {
      ...(keys.length ? { ssh_authorized_keys: keys } : {}),
      ...(form.userData.trim() ? { user_data: form.userData } : {}),
    };
  }
  return request;
}

export function VmCreate({ onClose, onCreated }: { onClose: () => void; onCreated: (vm: VMView) => void }) {
  const [form, setForm] = useState({
    name: '',
    namespace: 'default',
    cpu: '1',
    memory: '512Mi',
    image: '',
    diskSize: '',
    sshKey: '',
    userData: '',
    network: '',
    hostLabels: '',
    start: false,
  });
  const [images, setImages] = useState<ImageView[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.images().then(setImages, () => setImages([]));
  }, []);

  const field = (key: keyof typeof form) => ({
    name: key,
    value: form[key] as string,
    onInput: (e: Event) => setForm({ ...form, [key]: (e.currentTarget as HTMLInputElement).value }),
  });

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onCreated(await api.createVm(createRequest(form)));
    } catch (err) {
      setError(describe(err));
      setBusy(false);
    }
  };

  return (
    <Modal title="Create a virtual machine" onClose={onClose}>
      <form onSubmit={submit} class="form-grid">
        <label>
          Name
          <input {...field('name')} required pattern="[a-z0-9]([-a-z0-9]*[a-z0-9])?" maxLength={63} autofocus />
        </label>
        <label>
          Namespace
          <input {...field('namespace')} required />
        </label>
        <label>
          vCPUs
          <input {...field('cpu')} type="number" min={1} max={512} required />
        </label>
        <label>
          Memory
          <input {...field('memory')} required placeholder="512Mi" />
        </label>
        <label>
          Image
          <select {...field('image')} onChange={(e) => setForm({ ...form, image: e.currentTarget.value })}>
            <option value="">none (empty disk or diskless)</option>
            {images.map((i) => (
              <option value={i.name} key={i.name}>
                {i.name} ({i.phase})
              </option>
            ))}
          </select>
        </label>
        <label>
          Disk size
          <input {...field('diskSize')} placeholder="e.g. 10Gi" />
        </label>
        <label>
          Network
          <input {...field('network')} placeholder="libvirt network, e.g. default" />
        </label>
        <label>
          Host labels
          <input {...field('hostLabels')} placeholder="optional: key=value, …" title="Only hosts with these labels" />
        </label>
        <label class="check">
          <input type="checkbox" name="start" checked={form.start} onChange={(e) => setForm({ ...form, start: e.currentTarget.checked })} />
          Start it now
        </label>
        <label class="full">
          SSH public keys (one a line)
          <textarea {...field('sshKey')} rows={2} placeholder="ssh-ed25519 AAAA… you@laptop" />
        </label>
        <label class="full">
          cloud-init user-data
          <textarea {...field('userData')} rows={4} placeholder="#cloud-config" />
        </label>
        <FormEnd error={error} busy={busy} onClose={onClose} submit="Create" working="Creating…" />
      </form>
    </Modal>
  );
}
