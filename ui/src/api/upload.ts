// A file sent as a request's raw body with XMLHttpRequest, whose upload events tell how far it is
// (fetch cannot report upload progress). Same session and errors as the JSON client: a 401 renews the
// token and sends once more; a failure is an ApiError with the envelope's message.

import { errorFrom } from './errors';
import { Session, session as defaultSession } from './session';

export type OnProgress = (loaded: number, total: number) => void;

function send(url: string, body: Blob, token: string, onProgress: OnProgress, signal?: AbortSignal) {
  return new Promise<{ status: number; statusText: string; body: unknown }>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.responseType = 'text';
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : body.size);
    xhr.onload = () => {
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(xhr.responseText);
      } catch {
        parsed = null;
      }
      resolve({ status: xhr.status, statusText: xhr.statusText, body: parsed });
    };
    xhr.onerror = () => reject(new TypeError('the upload was interrupted'));
    xhr.onabort = () => reject(new DOMException('the upload was cancelled', 'AbortError'));
    signal?.addEventListener('abort', () => xhr.abort());
    xhr.send(body);
  });
}

/** PUT `body` to /api/v1`path` with progress; the envelope's data on success. */
export async function upload<T>(
  path: string,
  body: Blob,
  onProgress: OnProgress,
  signal?: AbortSignal,
  session: Session = defaultSession,
): Promise<T> {
  const url = `/api/v1${path}`;
  let answer = await send(url, body, await session.token(), onProgress, signal);
  if (answer.status === 401) {
    await session.renew();
    answer = await send(url, body, await session.token(), onProgress, signal);
  }
  if (answer.status < 200 || answer.status >= 300) throw errorFrom(answer.status, answer.body, answer.statusText);
  return (answer.body as { data: T }).data;
}
