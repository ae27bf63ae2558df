// What the forms check before they send: the gateway's own rules (vapor.model.image, vapor.agentapi.userspec,
// vapor.agentapi.dockerspec), so a person sees the problem at once. The gateway still decides.
// Each check answers null when the value is fine, else one sentence that says what is wanted.

export const IMAGE_FORMATS = ['qcow2', 'raw', 'iso'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const URL = /^https?:\/\/\S+$/;
const SHA256 = /^[0-9a-f]{64}$/;
const ACCOUNT = /^[a-z_][a-z0-9_-]{0,31}$/;
export const MIN_PASSWORD = 8;
export const MAX_PASSWORD = 1024;
const MAX_GROUPS = 64;

export function imageName(value: string): string | null {
  if (!value) return 'Name is required.';
  if (value.length > 253 || !DNS_SUBDOMAIN.test(value))
    return 'Name: lower-case letters, digits, "-" and ".", starting and ending with a letter or digit (at most 253).';
  return null;
}

export function imageUrl(value: string): string | null {
  if (!value) return 'URL is required.';
  if (value.length > 2048 || !URL.test(value)) return 'URL: an http:// or https:// address without spaces.';
  return null;
}

export function checksum(value: string, required: boolean): string | null {
  if (!value) return required ? 'Checksum is required: the sha256 of the file (hosts never use a copy that differs).' : null;
  if (!SHA256.test(value)) return 'Checksum: the sha256 as 64 lower-case hex digits (sha256sum prints it).';
  return null;
}

export function accountName(value: string, what = 'User name'): string | null {
  if (!ACCOUNT.test(value))
    return `${what} "${value.slice(0, 40)}": 1 to 32 of a-z, 0-9, "_" and "-", starting with a letter or "_".`;
  return null;
}

export function password(value: string, again: string): string | null {
  if (value.length < MIN_PASSWORD || value.length > MAX_PASSWORD)
    return `Password: ${MIN_PASSWORD} to ${MAX_PASSWORD} characters.`;
  if (/[\n\r\0]/.test(value)) return 'Password: no line breaks or NUL characters.';
  if (value !== again) return 'The two passwords differ.';
  return null;
}

/** The groups field as the API takes it ("a,b"), or the first problem. */
export function groups(value: string): { groups: string; error: string | null } {
  const names = value
    .split(',')
    .map((g) => g.trim())
    .filter(Boolean);
  if (names.length > MAX_GROUPS) return { groups: '', error: `At most ${MAX_GROUPS} groups.` };
  for (const name of names) {
    const error = accountName(name, 'Group');
    if (error) return { groups: '', error };
  }
  return { groups: [...new Set(names)].join(','), error: null };
}

/** The first problem of several checks (null when none). */
export function firstProblem(...problems: (string | null)[]): string | null {
  return problems.find((p) => p !== null) ?? null;
}
