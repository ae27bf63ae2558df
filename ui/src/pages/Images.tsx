import { api } from '../api/client';
import { bytes } from '../lib/format';
import { usePoll } from '../lib/poll';
import { Badge, ErrorBanner, Progress } from '../ui';

export function Images() {
  const { data, error } = usePoll(api.images, 5000, (all) =>
    all.some((i) => i.hosts.some((h) => ['Pending', 'Fetching', 'Verifying'].includes(h.phase))) ? 1500 : null,
  );
  return (
    <section aria-labelledby="images-title">
      <h1 id="images-title">Images</h1>
      <ErrorBanner error={error} />
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Phase</th>
              <th>Format</th>
              <th>Size</th>
              <th>Hosts</th>
            </tr>
          </thead>
          <tbody>
            {(data ?? []).map((image) => (
              <tr key={image.name}>
                <td>{image.name}</td>
                <td>
                  <Badge status={image.phase} />
                </td>
                <td>{image.format}</td>
                <td>{bytes(image.size)}</td>
                <td>
                  {image.hosts.length === 0 && <span class="muted">no copies yet</span>}
                  {image.hosts.map((h) => (
                    <div key={h.host} class="host-copy">
                      <span>{h.host}</span> <Badge status={h.phase} />
                      {h.phase !== 'Ready' && h.percent != null && <Progress value={h.percent} />}
                      {h.reason && <span class="bad-text"> {h.reason}</span>}
                    </div>
                  ))}
                </td>
              </tr>
            ))}
            {data && data.length === 0 && (
              <tr>
                <td colSpan={5} class="muted">
                  No images.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </section>
  );
}
