// Routes live in the URL's fragment (/#/hosts/abc): the gateway serves one page and knows nothing of them.

import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { page: 'hosts' }
  | { page: 'host'; id: string }
  | { page: 'vms' }
  | { page: 'migrations' }
  | { page: 'images' };

export function parse(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [first, second] = parts;
  if (first === 'hosts' && second) return { page: 'host', id: second };
  if (first === 'vms' || first === 'migrations' || first === 'images' || first === 'hosts') return { page: first };
  return { page: 'vms' };
}

export function href(route: Route): string {
  return route.page === 'host' ? `#/hosts/${encodeURIComponent(route.id)}` : `#/${route.page}`;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parse(location.hash));
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}
