import { useEffect, useState } from 'preact/hooks';
import { session, type User } from './api/session';
import { href, useRoute, type Route } from './lib/router';
import { HostPage } from './pages/HostPage';
import { Hosts } from './pages/Hosts';
import { Images } from './pages/Images';
import { Login } from './pages/Login';
import { Migrations } from './pages/Migrations';
import { Vms } from './pages/Vms';

const NAV: { route: Route; label: string }[] = [
  { route: { page: 'hosts' }, label: 'Hosts' },
  { route: { page: 'vms' }, label: 'VMs' },
  { route: { page: 'migrations' }, label: 'Migrations' },
  { route: { page: 'images' }, label: 'Images' },
];

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'hosts':
      return <Hosts />;
    case 'host':
      return <HostPage id={route.id} key={route.id} />;
    case 'migrations':
      return <Migrations />;
    case 'images':
      return <Images />;
    default:
      return <Vms />;
  }
}

export function App() {
  const [user, setUser] = useState<User | null>(session.user);
  const route = useRoute();
  useEffect(() => session.subscribe(setUser), []);

  if (!user) return <Login />;
  const active = route.page === 'host' ? 'hosts' : route.page;
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <strong class="brand">Vapor</strong>
        <nav aria-label="Main">
          {NAV.map((item) => (
            <a
              key={item.label}
              href={href(item.route)}
              aria-current={item.route.page === active ? 'page' : undefined}
            >
              {item.label}
            </a>
          ))}
        </nav>
        <span class="who">
          {user.username} <span class={`role ${user.role}`}>{user.role}</span>
        </span>
        <button type="button" onClick={() => void session.logout()}>
          Log out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {user.role !== 'admin' && (
          <p class="banner info" role="note">
            You are logged in as a viewer: you can look at everything, and an admin can change it.
          </p>
        )}
        <Page route={route} />
      </main>
    </>
  );
}
