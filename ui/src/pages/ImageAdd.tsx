// Adding an image: from a URL the hosts download (name, URL, format, checksum, which hosts fetch it now), or a
// local file uploaded to one host with a progress bar. "Upload…" on an upload image that still needs its file
// (not Ready yet: never sent, or a transfer cancelled or cut off; or a host's copy Failed) sends it with the
// same dialog; a Ready upload image shows none.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type CreateImageRequest, type HostView } from '../api/client';
import { describe } from '../api/errors';
import { checksum, firstProblem, IMAGE_FORMATS, imageName, imageUrl, type ImageFormat } from '../lib/checks';
import { transfer, type Transfer } from '../lib/transfer';
import { ErrorBanner, Modal, Progress } from '../ui';
import { parseLabels } from './VmCreate';

type Source = 'http' | 'upload';

export interface ImageForm {
  name: string;
  source: Source;
  url: string;
  checksum: string;
  format: ImageFormat;
  prefetch: boolean;
  prefetchLabels: string;
}

/** The request a filled-in form makes, or the first thing to fix (exported for the unit tests). */
export function imageRequest(form: ImageForm): CreateImageRequest {
  const name = form.name.trim();
  const sum = form.checksum.trim().toLowerCase();
  const url = form.url.trim();
  const problem = firstProblem(
    imageName(name),
    form.source === 'http' ? imageUrl(url) : null,
    checksum(sum, form.source === 'http'),
  );
  if (problem) throw new Error(problem);
  const request: CreateImageRequest = {
    name,
    format: form.format,
    source: form.source === 'http' ? { http: { url } } : { upload: {} },
  };
  if (sum) request.checksum = sum;
  if (form.source === 'http' && form.prefetch) request.prefetch = { host_selector: parseLabels(form.prefetchLabels) };
  return request;
}

/** A file's extension as an image format, when it says one. */
export function formatOf(fileName: string): ImageFormat | null {
  const ext = fileName.toLowerCase().split('.').pop() ?? '';
  if (ext === 'qcow2' || ext === 'iso' || ext === 'raw') return ext;
  if (ext === 'img') return 'raw';
  return null;
}

function useHosts() {
  const [hosts, setHosts] = useState<HostView[]>([]);
  useEffect(() => {
    api.hosts().then(setHosts, () => setHosts([]));
  }, []);
  return hosts;
}

/** The upload part: host picker, file picker, and the progress of the send. */
function UploadFields(props: {
  host: string;
  setHost: (h: string) => void;
  setFile: (f: File | null) => void;
}) {
  const hosts = useHosts();
  const { host, setHost } = props;
  useEffect(() => {
    const pick = hosts.find((h) => h.status === 'connected') ?? hosts[0];
    if (!host && pick) setHost(pick.name);
  }, [hosts]);
  return (
    <>
      <label>
        Host
        <select name="host" value={host} onChange={(e) => setHost(e.currentTarget.value)} required>
          {hosts.map((h) => (
            <option value={h.name} key={h.name}>
              {h.name} ({h.status})
            </option>
          ))}
        </select>
      </label>
      <label>
        Image file
        <input
          type="file"
          name="file"
          required
          onChange={(e) => props.setFile(e.currentTarget.files?.[0] ?? null)}
        />
      </label>
    </>
  );
}

/** The bar and the readable end of a form: what the send has done, and what went wrong. */
function Outcome({ progress, error }: { progress: Transfer | null; error: string | null }) {
  return (
    <div class="full">
      {progress && <Progress value={progress.percent} label={progress.label} />}
      <ErrorBanner error={error} />
    </div>
  );
}

/** Sends a file with progress; cancels the send when the dialog goes. */
function useUpload() {
  const [progress, setProgress] = useState<Transfer | null>(null);
  const abort = useRef<AbortController>();
  useEffect(() => () => abort.current?.abort(), []);
  const send = async (name: string, host: string, file: File) => {
    abort.current = new AbortController();
    const started = performance.now();
    setProgress(transfer(0, file.size, 0));
    await api.uploadImage(name, host, file, (loaded, total) => {
      setProgress(transfer(loaded, total, (performance.now() - started) / 1000));
    }, abort.current.signal);
    setProgress(transfer(file.size, file.size, (performance.now() - started) / 1000));
  };
  return { progress, send };
}

export function ImageAdd({ onClose, onDone }: { onClose: () => void; onDone: () => void }) {
  const [form, setForm] = useState<ImageForm>({
    name: '',
    source: 'http',
    url: '',
    checksum: '',
    format: 'qcow2',
    prefetch: true,
    prefetchLabels: '',
  });
  const [host, setHost] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const { progress, send } = useUpload();
  const created = useRef<string | null>(null);

  const text = (key: 'name' | 'url' | 'checksum' | 'prefetchLabels') => ({
    name: key,
    value: form[key],
    onInput: (e: Event) => setForm({ ...form, [key]: (e.currentTarget as HTMLInputElement).value }),
  });

  const pickFile = (f: File | null) => {
    setFile(f);
    if (!f) return;
    const format = formatOf(f.name);
    const name = form.name || f.name.toLowerCase().replace(/\.[^.]*$/, '').replace(/[^a-z0-9.-]+/g, '-').replace(/^[-.]+|[-.]+$/g, '');
    setForm({ ...form, name, ...(format ? { format } : {}) });
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setError(null);
    try {
      const request = imageRequest(form);
      if (form.source === 'upload' && !file) throw new Error('Choose the image file to upload.');
      if (created.current !== request.name) {
        setBusy('Creating…');
        await api.createImage(request);
        created.current = request.name; // a failed upload is tried again without creating it twice
      }
      if (form.source === 'upload' && file) {
        setBusy('Uploading…');
        await send(request.name, host, file);
      }
      onDone();
    } catch (err) {
      setError(describe(err));
      setBusy(null);
    }
  };

  const http = form.source === 'http';
  return (
    <Modal title="Add an image" onClose={onClose}>
      <form onSubmit={submit} class="form-grid" noValidate>
        <fieldset class="full source-choice">
          <legend>Source</legend>
          {(['http', 'upload'] as const).map((s) => (
            <label class="check" key={s}>
              <input
                type="radio"
                name="source"
                value={s}
                checked={form.source === s}
                disabled={created.current !== null}
                onChange={() => setForm({ ...form, source: s })}
              />
              {s === 'http' ? 'Download from a URL' : 'Upload a file from this computer'}
            </label>
          ))}
        </fieldset>
        <label>
          Name
          <input {...text('name')} required maxLength={253} autofocus readOnly={created.current !== null} />
        </label>
        <label>
          Format
          <select
            name="format"
            disabled={created.current !== null}
            value={form.format}
            onChange={(e) => setForm({ ...form, format: e.currentTarget.value as ImageFormat })}
          >
            {IMAGE_FORMATS.map((f) => (
              <option value={f} key={f}>
                {f}
              </option>
            ))}
          </select>
        </label>
        {!http && <UploadFields host={host} setHost={setHost} setFile={pickFile} />}
        {http && (
          <label class="full">
            URL
            <input {...text('url')} type="url" required placeholder="https://cloud.debian.org/…/debian-12.qcow2" />
          </label>
        )}
        <label class="full">
          Checksum (sha256){http ? '' : ', optional'}
          <input
            {...text('checksum')}
            required={http}
            maxLength={64}
            spellcheck={false}
            class="mono"
            readOnly={created.current !== null}
          />
        </label>
        {http && (
          <>
            <label class="check">
              <input
                type="checkbox"
                name="prefetch"
                checked={form.prefetch}
                onChange={(e) => setForm({ ...form, prefetch: e.currentTarget.checked })}
              />
              Fetch it now (else a host fetches it when a VM needs it)
            </label>
            <label>
              Fetch to hosts with labels
              <input {...text('prefetchLabels')} disabled={!form.prefetch} placeholder="empty: every host" />
            </label>
          </>
        )}
        {created.current && !busy && (
          <p class="muted full">
            Image {created.current} exists now, as above: send a file that matches it, or cancel and delete it.
          </p>
        )}
        <Outcome progress={progress} error={error} />
        <div class="actions full">
          <button type="button" onClick={onClose}>
            {busy === 'Uploading…' ? 'Cancel upload' : 'Cancel'}
          </button>
          <button type="submit" class="primary" disabled={busy !== null}>
            {busy ?? (http ? 'Create' : created.current ? 'Upload again' : 'Create and upload')}
          </button>
        </div>
      </form>
    </Modal>
  );
}

/** Upload the file of an existing upload image to a host (another one, or again after a failure). */
export function ImageUpload({ name, onClose, onDone }: { name: string; onClose: () => void; onDone: () => void }) {
  const [host, setHost] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const { progress, send } = useUpload();

  const submit = async (event: Event) => {
    event.preventDefault();
    setError(null);
    if (!file) {
      setError('Choose the image file to upload.');
      return;
    }
    setBusy(true);
    try {
      await send(name, host, file);
      onDone();
    } catch (err) {
      setError(describe(err));
      setBusy(false);
    }
  };

  return (
    <Modal title={`Upload the file of ${name}`} onClose={onClose}>
      <form onSubmit={submit} class="form-grid" noValidate>
        <UploadFields host={host} setHost={setHost} setFile={setFile} />
        <Outcome progress={progress} error={error} />
        <div class="actions full">
          <button type="button" onClick={onClose}>
            {busy ? 'Cancel upload' : 'Cancel'}
          </button>
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Uploading…' : 'Upload'}
          </button>
        </div>
      </form>
    </Modal>
  );
}
