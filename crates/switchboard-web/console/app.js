// The console's entry: logging in, the hash routes (#/channel/news) and the session's
// long-lived feeds (direct messages and group events), shared by the pages.

import { Client } from '/js/index.js';
import { el, showError, clearError, page } from './ui.js';
import { channelsPage, channelPage, followPage } from './channels.js';
import { groupsPage, groupPage } from './groups.js';
import { directPage } from './direct.js';
import { adminPage } from './admin.js';

/** What the pages share: the client and the feeds' listeners. */
export const app = {
  client: null,
  inbox: [],
  unread: 0,
  groupListeners: new Set(),
  directListeners: new Set(),
};

const view = document.getElementById('view');
let leaving = [];

/** Registers what to undo when the page changes (close a subscription, stop a timer). */
export function onLeave(undo) {
  leaving.push(undo);
}

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/ws`;
}

function loginPage() {
  const user = el('input', { id: 'login-user', name: 'user', autocomplete: 'username' });
  const password = el('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password' });
  const token = el('input', { id: 'login-token', name: 'token', type: 'password', autocomplete: 'off' });
  const name = el('input', { id: 'login-name', name: 'name', value: 'console' });
  const connect = async (options) => {
    clearError();
    try {
      const client = await Client.connect(wsUrl(), { software: 'switchboard-console', ...options });
      started(client);
    } catch (error) {
      showError(error);
    }
  };
  const passwordForm = el('form', { id: 'login-form', class: 'card', onsubmit: (event) => {
    event.preventDefault();
    connect({ user: user.value, password: password.value });
  } },
  el('h2', {}, 'User and password'),
  el('label', { for: 'login-user' }, 'User'), user,
  el('label', { for: 'login-password' }, 'Password'), password,
  el('button', { type: 'submit', id: 'login-submit' }, 'Log in'));
  const tokenForm = el('form', { id: 'token-form', class: 'card', onsubmit: (event) => {
    event.preventDefault();
    connect(tokenOptions({ token: token.value.trim() }));
  } },
  el('h2', {}, 'Token'),
  el('label', { for: 'login-token' }, 'Token (a named token, or a JSON Web Token)'), token,
  el('button', { type: 'submit' }, 'Log in with the token'));
  const anonymousForm = el('form', { id: 'anonymous-form', class: 'card', onsubmit: (event) => {
    event.preventDefault();
    connect({ name: name.value || 'console' });
  } },
  el('h2', {}, 'Anonymous'),
  el('p', {}, 'Where the server allows sessions without credentials.'),
  el('label', { for: 'login-name' }, 'Name'), name,
  el('button', { type: 'submit' }, 'Connect anonymously'));
  page(view, 'Log in', el('div', { class: 'cards' }, passwordForm, tokenForm, anonymousForm));
  user.focus();
}

/** A token of three dot-separated parts is a JSON Web Token. */
function tokenOptions(options) {
  if (options.token && options.token.split('.').length === 3) return { jwt: options.token };
  return options;
}

function started(client) {
  app.client = client;
  app.inbox = [];
  app.unread = 0;
  const { session } = client;
  document.getElementById('who-name').textContent =
    `${session.user ? `${session.user}` : `${session.name} (anonymous)`} · client ${session.clientId}`;
  document.getElementById('who').hidden = false;
  document.getElementById('nav').hidden = false;
  client.closed.then(() => ended(client, null), (error) => ended(client, error));
  pump(client.directFeed(), (message) => {
    app.inbox.unshift(message);
    app.unread += 1;
    showUnread();
    for (const listener of app.directListeners) listener(message);
  });
  pump(client.groupFeed(), (item) => {
    for (const listener of app.groupListeners) listener(item);
  });
  if (!location.hash || location.hash === '#/' || location.hash === '#/login') location.hash = '#/channels';
  else route();
}

async function pump(feed, deliver) {
  try {
    for await (const item of feed) deliver(item);
  } catch {
    // The feed ends with the session; `closed` reports why.
  }
}

export function showUnread() {
  const badge = document.getElementById('unread');
  badge.textContent = String(app.unread);
  badge.hidden = app.unread === 0;
}

function ended(client, error) {
  if (app.client !== client) return;
  loggedOut();
  if (error) showError(error);
  else showError({ code: 'CLOSED', message: 'the session has ended' });
}

function loggedOut() {
  app.client = null;
  document.getElementById('who').hidden = true;
  document.getElementById('nav').hidden = true;
  leave();
  loginPage();
}

function leave() {
  for (const undo of leaving) {
    try {
      undo();
    } catch {
      // Undoing is best effort: the page is going away.
    }
  }
  leaving = [];
}

const routes = [
  [/^#\/channels$/, () => channelsPage(view)],
  [/^#\/channel\/(.+)$/, (name) => channelPage(view, name)],
  [/^#\/follow(?:\/(.*))?$/, (pattern) => followPage(view, pattern ?? '')],
  [/^#\/groups$/, () => groupsPage(view)],
  [/^#\/group\/(.+)$/, (name) => groupPage(view, name)],
  [/^#\/direct$/, () => directPage(view)],
  [/^#\/admin$/, () => adminPage(view)],
];

function route() {
  leave();
  clearError();
  if (!app.client) {
    loginPage();
    return;
  }
  const hash = location.hash || '#/channels';
  for (const link of document.querySelectorAll('#nav a')) {
    const area = link.dataset.area;
    if (hash.startsWith(`#/${area}`)) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  for (const [pattern, show] of routes) {
    const match = hash.match(pattern);
    if (match) {
      const argument = match[1] === undefined ? undefined : decodeURIComponent(match[1]);
      // A page that put focus on its first field keeps it; otherwise its heading gets it,
      // so that keyboard and screen-reader users start at the new page.
      Promise.resolve(show(argument))
        .then(() => {
          if (!view.contains(document.activeElement)) view.querySelector('h1')?.focus({ preventScroll: true });
        })
        .catch((error) => showError(error));
      return;
    }
  }
  page(view, 'Not found', el('p', {}, 'No such page. ', el('a', { href: '#/channels' }, 'Channels')));
}

document.getElementById('logout').addEventListener('click', async () => {
  const client = app.client;
  if (!client) return;
  loggedOut();
  await client.close().catch(() => {});
});
window.addEventListener('hashchange', route);
loginPage();
