// A host's Docker engine: create a container from an image on the host (not started), and pull an image.

import { useState } from 'preact/hooks';
import { api } from '../api/client';
import { containerRequest, pullRequest } from '../lib/docker';
import { Modal } from '../ui';
import { FormEnd, useSubmit } from './forms';

type Props = { host: string; onClose: () => void; onDone: (what: string) => void };

export function ContainerCreate(props: Props) {
  const [form, setForm] = useState({ image: '', name: '', env: '', ports: '' });
  const field = (key: keyof typeof form) => ({
    name: key,
    value: form[key],
    onInput: (e: Event) => setForm({ ...form, [key]: (e.currentTarget as HTMLInputElement).value }),
  });
  const { error, busy, run } = useSubmit(props.onDone);
  const submit = (event: Event) =>
    run(event, async () => {
      const made = await api.createContainer(props.host, containerRequest(form));
      const warnings = made.warnings.length ? ` Docker says: ${made.warnings.join('; ')}` : '';
      return `Container ${made.name} created from ${made.image}; start it when you want it to run.${warnings}`;
    });
  return (
    <Modal title="Create a container" onClose={props.onClose}>
      <form onSubmit={submit} class="form-grid" noValidate>
        <label>
          Image
          <input {...field('image')} required autofocus spellcheck={false} placeholder="nginx:latest (on the host)" />
        </label>
        <label>
          Name
          <input {...field('name')} spellcheck={false} placeholder="optional: Docker picks one" />
        </label>
        <label class="full">
          Environment (NAME=value, one a line)
          <textarea {...field('env')} rows={2} spellcheck={false} class="mono" />
        </label>
        <label class="full">
          Ports (HOSTPORT:PORT[/udp], one a line)
          <textarea {...field('ports')} rows={2} spellcheck={false} class="mono" placeholder="8080:80" />
        </label>
        <FormEnd error={error} busy={busy} onClose={props.onClose} submit="Create" />
      </form>
    </Modal>
  );
}

export function ImagePull(props: Props) {
  const [form, setForm] = useState({ imageName: '', tag: 'latest' });
  const { error, busy, run } = useSubmit(props.onDone);
  const submit = (event: Event) =>
    run(event, async () => {
      const pulled = await api.pullImage(props.host, pullRequest(form));
      return `Pulled ${pulled.image} (${pulled.id.slice(0, 19)}).`;
    });
  return (
    <Modal title="Pull an image" onClose={props.onClose}>
      <form onSubmit={submit} class="form-grid" noValidate>
        <label>
          Image
          <input
            name="imageName"
            required
            autofocus
            spellcheck={false}
            placeholder="nginx, or registry:5000/team/app"
            onInput={(e) => setForm({ ...form, imageName: e.currentTarget.value })}
          />
        </label>
        <label>
          Tag
          <input name="tag" value={form.tag} onInput={(e) => setForm({ ...form, tag: e.currentTarget.value })} />
        </label>
        <FormEnd error={error} busy={busy} onClose={props.onClose} submit="Pull" />
      </form>
    </Modal>
  );
}
