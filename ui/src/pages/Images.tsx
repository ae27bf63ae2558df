import { useState } from 'preact/hooks';
import { api, type ImageView } from '../api/client';
import { describe } from '../api/errors';
import { bytes, tone } from '../lib/format';
import { usePoll } from '../lib/poll';
import { imagesMoving, needsUpload } from '../lib/transfer';
import { Badge, Confirm, ErrorBanner, Progress, Table, WriteButton } from '../ui';
import { ImageAdd, ImageUpload } from './ImageAdd';

const moving = (all: ImageView[]) => (imagesMoving(all) ? 1000 : null);

function source(image: ImageView): string {
  const s = image.source as { http?: { url: string }; host_path?: { path: string }; upload?: object };
  if (s.http) return s.http.url;
  if (s.host_path) return s.host_path.path;
  return 'uploaded';
}

function Copies({ image }: { image: ImageView }) {
  return (
    <>
      {image.hosts.length === 0 && <span class="muted">no copies yet</span>}
      {image.hosts.map((h) => (
        <div key={h.host} class="host-copy">
          <span>{h.host}</span> <Badge status={h.phase} />
          {h.phase !== 'Ready' && h.percent != null && (
            <Progress value={h.percent} label={`${h.percent}% · ${bytes(h.bytes)} of ${bytes(h.total_bytes)}`} />
          )}
          {tone(h.phase) === 'bad' && (h.reason || h.message) && (
            <span class="bad-text">{[h.reason, h.message].filter(Boolean).join(': ')}</span>
          )}
        </div>
      ))}
    </>
  );
}

export function Images() {
  const { data, error, refresh } = usePoll(api.images, 5000, moving);
  const [adding, setAdding] = useState(false);
  const [uploading, setUploading] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<ImageView | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  const remove = async (image: ImageView) => {
    setDeleting(null);
    setFailure(null);
    try {
      await api.deleteImage(image.name);
    } catch (err) {
      setFailure(describe(err));
    }
    refresh();
  };
  const done = (close: () => void) => () => {
    close();
    refresh();
  };

  return (
    <section aria-labelledby="images-title">
      <div class="title-row">
        <h1 id="images-title">Images</h1>
        <WriteButton onClick={() => setAdding(true)}>Add image…</WriteButton>
      </div>
      <ErrorBanner error={error} />
      <ErrorBanner error={failure} onClose={() => setFailure(null)} />
      {data && (
        <Table
          rows={data}
          rowKey={(i) => i.name}
          cards
          rowAttrs={(i) => ({ 'data-image': i.name })}
          empty="No images."
          columns={[
            { label: 'Name', cell: (i) => i.name },
            { label: 'Phase', cell: (i) => <Badge status={i.deleting ? 'Terminating' : i.phase} /> },
            { label: 'Source', cell: (i) => <span class="source">{source(i)}</span>, wide: true },
            { label: 'Format', cell: (i) => i.format, wide: true },
            { label: 'Size', cell: (i) => bytes(i.size) },
            { label: 'Hosts', cell: (i) => <Copies image={i} /> },
            {
              label: 'Actions',
              cell: (i) => (
                <div class="row-actions">
                  {needsUpload(i) && (
                    <WriteButton onClick={() => setUploading(i.name)} disabled={i.deleting} label={`Upload ${i.name}`}>
                      Upload…
                    </WriteButton>
                  )}
                  <WriteButton danger onClick={() => setDeleting(i)} disabled={i.deleting} label={`Delete ${i.name}`}>
                    Delete…
                  </WriteButton>
                </div>
              ),
            },
          ]}
        />
      )}
      {adding && <ImageAdd onClose={() => setAdding(false)} onDone={done(() => setAdding(false))} />}
      {uploading && (
        <ImageUpload name={uploading} onClose={() => setUploading(null)} onDone={done(() => setUploading(null))} />
      )}
      {deleting && (
        <Confirm
          title={`Delete image ${deleting.name}?`}
          message={`The image is deleted and every host drops its copy. An image a VM uses is refused.`}
          confirm="Delete"
          danger
          onConfirm={() => void remove(deleting)}
          onClose={() => setDeleting(null)}
        />
      )}
    </section>
  );
}
