import { api } from '../api/client';
import { bytes } from '../lib/format';
import { usePoll } from '../lib/poll';
import { Badge, ErrorBanner, Progress, Table } from '../ui';

export function Images() {
  const { data, error } = usePoll(api.images, 5000, (all) =>
    all.some((i) => i.hosts.some((h) => ['Pending', 'Fetching', 'Verifying'].includes(h.phase))) ? 1500 : null,
  );
  return (
    <section aria-labelledby="images-title">
      <h1 id="images-title">Images</h1>
      <ErrorBanner error={error} />
      {data && (
        <Table
          rows={data}
          rowKey={(i) => i.name}
          empty="No images."
          columns={[
            { label: 'Name', cell: (i) => i.name },
            { label: 'Phase', cell: (i) => <Badge status={i.phase} /> },
            { label: 'Format', cell: (i) => i.format },
            { label: 'Size', cell: (i) => bytes(i.size) },
            {
              label: 'Hosts',
              cell: (image) => (
                <>
                  {image.hosts.length === 0 && <span class="muted">no copies yet</span>}
                  {image.hosts.map((h) => (
                    <div key={h.host} class="host-copy">
                      <span>{h.host}</span> <Badge status={h.phase} />
                      {h.phase !== 'Ready' && h.percent != null && <Progress value={h.percent} />}
                      {h.reason && <span class="bad-text"> {h.reason}</span>}
                    </div>
                  ))}
                </>
              ),
            },
          ]}
        />
      )}
    </section>
  );
}
