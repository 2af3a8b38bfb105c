// Plays the browser through the server-rendered login and consent pages: follows
// redirects by hand (redirect: 'manual'), keeps cookies, fills the username and password,
// submits hidden fields (the CSRF token) as they are, and presses the approving button,
// until the server redirects to the client's redirect URI. Never fetches that URI.

import { ConformanceError } from './check.mjs';

// Login page, consent page, and a redirect or two between them: more means a loop.
const HOPS_MAX = 10;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const APPROVE = /approve|allow|accept|consent|continue|authori[sz]e|grant|sign|log ?in|submit|yes/i;
const DECLINE = /deny|decline|cancel|reject|refuse|no\b/i;

function attributes(tag) {
  const out = {};
  for (const m of tag.matchAll(/([\w:-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?/g)) {
    out[m[1].toLowerCase()] = unescapeHtml(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

function unescapeHtml(text) {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos|#39);/gi, (_, e) => {
    const lower = e.toLowerCase();
    if (lower.startsWith('#x')) return String.fromCodePoint(parseInt(lower.slice(2), 16));
    if (lower.startsWith('#')) return String.fromCodePoint(parseInt(lower.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[lower];
  });
}

// The first <form> of the page: its action, method, inputs and submit buttons.
export function parseForm(html, pageUrl) {
  const form = html.match(/<form\b([^>]*)>([\s\S]*?)<\/form>/i);
  if (!form) return null;
  const formAttrs = attributes(form[1]);
  const inputs = [];
  const buttons = [];
  for (const m of form[2].matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>|<input\b([^>]*)>/gi)) {
    const isButton = m[1] !== undefined;
    const attrs = attributes(isButton ? m[1] : m[3]);
    const type = (attrs.type ?? (isButton ? 'submit' : 'text')).toLowerCase();
    if (type === 'submit' || type === 'image') {
      const text = (m[2] ?? '').replace(/<[^>]*>/g, ' ');
      buttons.push({ name: attrs.name, value: attrs.value ?? '', label: `${attrs.value ?? ''} ${attrs.name ?? ''} ${text}` });
    } else if (attrs.name !== undefined) {
      inputs.push({ name: attrs.name, type, value: attrs.value ?? '', checked: 'checked' in attrs });
    }
  }
  return {
    action: new URL(formAttrs.action || pageUrl, pageUrl),
    method: (formAttrs.method ?? 'get').toUpperCase(),
    inputs,
    buttons,
  };
}

function fill(form, user) {
  const body = new URLSearchParams();
  for (const input of form.inputs) {
    if (input.type === 'password') body.append(input.name, user.password);
    else if (['text', 'email'].includes(input.type) && /user|login|email|name|account/i.test(input.name)) body.append(input.name, user.username);
    else if (['checkbox', 'radio'].includes(input.type)) { if (input.checked) body.append(input.name, input.value || 'on'); }
    else body.append(input.name, input.value);
  }
  const button = form.buttons.find((b) => APPROVE.test(b.label) && !DECLINE.test(b.label))
    ?? form.buttons.find((b) => !DECLINE.test(b.label));
  if (button?.name) body.append(button.name, button.value);
  return body;
}

class CookieJar {
  #cookies = new Map();

  store(response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq > 0) this.#cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }

  header() {
    return [...this.#cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

function isRedirectUri(location, redirectUri) {
  const target = new URL(redirectUri);
  return location.origin === target.origin && location.pathname === target.pathname;
}

// Returns the URL the server finally redirected to (the client's redirect URI).
export async function authorizeThroughLogin(authorizationUrl, user, redirectUri, signal) {
  const jar = new CookieJar();
  let url = authorizationUrl;
  let method = 'GET';
  let body;
  const trail = [];
  for (let hop = 0; hop < HOPS_MAX; hop += 1) {
    const headers = { accept: 'text/html' };
    const cookie = jar.header();
    if (cookie) headers.cookie = cookie;
    if (method === 'POST') {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers.origin = url.origin;  // what a browser sends with a form post
    }
    const response = await fetch(url, { method, headers, body, redirect: 'manual', signal });
    jar.store(response);
    trail.push(`${method} ${url.pathname} → ${response.status}`);
    if (REDIRECT_STATUSES.has(response.status)) {
      const location = new URL(response.headers.get('location'), url);
      if (isRedirectUri(location, redirectUri)) return location;
      if (location.origin !== url.origin) throw new ConformanceError(`redirected off the issuer to ${location.origin}`, trail);
      url = location;
      method = 'GET';
      body = undefined;
      continue;
    }
    const html = await response.text();
    if (response.status !== 200) throw new ConformanceError(`login flow got HTTP ${response.status}`, { trail, body: html.slice(0, 500) });
    const form = parseForm(html, url);
    if (!form) throw new ConformanceError('a page of the login flow has no form', { trail, body: html.slice(0, 500) });
    const fields = fill(form, user);
    if (form.method === 'POST') {
      url = form.action;
      method = 'POST';
      body = fields;
    } else {
      url = new URL(form.action);
      url.search = fields.toString();
      method = 'GET';
      body = undefined;
    }
  }
  throw new ConformanceError(`no redirect to the client after ${HOPS_MAX} hops`, trail);
}
