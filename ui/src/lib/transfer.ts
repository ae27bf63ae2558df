// How far a transfer is, as the progress bars show it: percent, bytes, rate and time left; whether an image list
// is moving, and whether an upload image still waits for its file.

import { bytes, duration } from './format';

export interface Transfer {
  /** 0 to 100, whole numbers; 100 only once everything was sent */
  percent: number;
  label: string;
}

/** `loaded` of `total` bytes sent in `seconds`; a total of 0 or less is unknown (no percent yet). */
export function transfer(loaded: number, total: number, seconds: number): Transfer {
  if (!(total > 0)) return { percent: 0, label: `${bytes(loaded)} sent` };
  const done = Math.max(0, Math.min(loaded, total));
  // floor, so that 99.6% is not shown as a finished 100%
  const percent = Math.floor((done / total) * 100);
  let label = `${percent}% · ${bytes(done)} of ${bytes(total)}`;
  if (done < total && seconds > 0.5 && done > 0) {
    const rate = done / seconds;
    label += ` · ${bytes(rate)}/s, ${duration(Math.ceil((total - done) / rate))} left`;
  }
  return { percent, label };
}

type Copy = { phase: string };
type Moving = { phase: string; deleting: boolean; fetch_hosts: string[]; hosts: Copy[] };

const SETTLED = ['Ready', 'Failed', 'Refused'];

/** Whether an image list is changing (a copy being fetched or verified, a deletion): it is looked at sooner. */
export function imagesMoving(images: Moving[]): boolean {
  return images.some(
    (i) =>
      i.deleting ||
      i.hosts.some((h) => !SETTLED.includes(h.phase)) ||
      (i.fetch_hosts.length > 0 && i.hosts.length < i.fetch_hosts.length),
  );
}

type Uploadable = { source: object; phase: string; hosts: Copy[] };

/**
 * Whether an upload image still needs its file sent: it is not Ready yet (never sent, or a transfer that was
 * cancelled or cut off), or a host's copy Failed (sent again, to that host or another). A Ready one needs nothing.
 */
export function needsUpload(image: Uploadable): boolean {
  return 'upload' in image.source && (image.phase !== 'Ready' || image.hosts.some((h) => h.phase === 'Failed'));
}
