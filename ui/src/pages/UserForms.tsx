// A host's accounts: create one (name, password twice, groups) and set a new password. The API has no
// deletion of accounts, so neither has the console.

import { useState } from 'preact/hooks';
import { api, type CreateUserRequest } from '../api/client';
import { accountName, firstProblem, groups, MAX_PASSWORD, MIN_PASSWORD, password } from '../lib/checks';
import { Modal } from '../ui';
import { FormEnd, useSubmit } from './forms';

/** The request a filled-in form makes, or the first thing to fix (exported for the unit tests). */
export function userRequest(form: { username: string; password: string; again: string; groups: string }): CreateUserRequest {
  const username = form.username.trim();
  const parsed = groups(form.groups);
  const problem = firstProblem(accountName(username), password(form.password, form.again), parsed.error);
  if (problem) throw new Error(problem);
  return { username, password: form.password, groups: parsed.groups };
}

function PasswordFields(props: { set: (key: 'password' | 'again', value: string) => void; first: string }) {
  return (
    <>
      <label>
        {props.first}
        <input
          type="password"
          name="password"
          autoComplete="new-password"
          minLength={MIN_PASSWORD}
          maxLength={MAX_PASSWORD}
          required
          onInput={(e) => props.set('password', e.currentTarget.value)}
        />
      </label>
      <label>
        Password again
        <input
          type="password"
          name="again"
          autoComplete="new-password"
          required
          onInput={(e) => props.set('again', e.currentTarget.value)}
        />
      </label>
    </>
  );
}

export function UserCreate(props: { host: string; onClose: () => void; onDone: (what: string) => void }) {
  const [form, setForm] = useState({ username: '', password: '', again: '', groups: '' });
  const set = (key: keyof typeof form, value: string) => setForm((f) => ({ ...f, [key]: value }));
  const { error, busy, run } = useSubmit(props.onDone);
  const submit = (event: Event) =>
    run(event, async () => {
      const made = await api.createUser(props.host, userRequest(form));
      return `Account ${made.user.username} created (uid ${made.user.uid}).`;
    });
  return (
    <Modal title="Create an account" onClose={props.onClose}>
      <form onSubmit={submit} class="form-grid" noValidate>
        <label>
          User name
          <input
            name="username"
            required
            maxLength={32}
            autofocus
            autoComplete="off"
            spellcheck={false}
            onInput={(e) => set('username', e.currentTarget.value)}
          />
        </label>
        <label>
          Groups
          <input
            name="groups"
            placeholder="optional: existing groups, comma-separated"
            onInput={(e) => set('groups', e.currentTarget.value)}
          />
        </label>
        <PasswordFields set={set} first="Password" />
        <p class="muted full">A home directory and /bin/bash are made for it.</p>
        <FormEnd error={error} busy={busy} onClose={props.onClose} submit="Create" />
      </form>
    </Modal>
  );
}

export function PasswordReset(props: { host: string; username: string; onClose: () => void; onDone: (what: string) => void }) {
  const [form, setForm] = useState({ password: '', again: '' });
  const set = (key: keyof typeof form, value: string) => setForm((f) => ({ ...f, [key]: value }));
  const { error, busy, run } = useSubmit(props.onDone);
  const submit = (event: Event) =>
    run(event, async () => {
      const problem = password(form.password, form.again);
      if (problem) throw new Error(problem);
      const done = await api.resetPassword(props.host, props.username, form.password);
      return `New password set for ${done.username}: its other logins end when their tokens expire.`;
    });
  return (
    <Modal title={`New password for ${props.username}`} onClose={props.onClose}>
      <form onSubmit={submit} class="form-grid" noValidate>
        <PasswordFields set={set} first="New password" />
        <FormEnd error={error} busy={busy} onClose={props.onClose} submit="Set password" />
      </form>
    </Modal>
  );
}
