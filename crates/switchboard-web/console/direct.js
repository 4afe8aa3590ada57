// Direct messages: sending to one or more client ids, the list of connected clients to
// pick from, and the inbox of what this session received.

import { app, onLeave, showUnread } from './app.js';
import { el, page, attempt, composer, renderMessage, localError, showError } from './ui.js';

function parseIds(text) {
  const ids = text.split(/[\s,]+/).filter(Boolean);
  if (ids.length === 0) throw localError('BAD_REQUEST', 'give at least one client id');
  if (ids.length > 255) throw localError('BAD_REQUEST', 'at most 255 client ids at once');
  return ids.map((id) => {
    if (!/^\d+$/.test(id)) throw localError('BAD_REQUEST', `"${id}" is not a client id (a number)`);
    return BigInt(id);
  });
}

export async function directPage(view) {
  const client = app.client;
  const to = el('input', { id: 'direct-to', required: true, placeholder: 'client ids, e.g. 3, 7', inputmode: 'numeric' });
  const results = el('p', { class: 'status', id: 'direct-result', 'aria-live': 'polite' });
  const { form } = composer({
    label: 'Direct message',
    send: async (body, contentType) => {
      const ids = parseIds(to.value);
      const outcome = await client.relay(ids, body, contentType ? { contentType } : {});
      results.textContent = (outcome ?? []).map((entry) => `client ${entry.clientId}: ${entry.status}`).join(' · ') || 'sent';
      const failed = (outcome ?? []).filter((entry) => entry.status !== 'delivered');
      if (failed.length > 0) {
        showError(localError('NOT_DELIVERED', failed.map((entry) => `client ${entry.clientId} ${entry.status}`).join(', ')));
      }
    },
  });
  form.prepend(el('label', { for: 'direct-to' }, 'To (client ids)'), to);
  const people = el('table', { class: 'listing', id: 'client-list' });
  const clients = await attempt(() => client.clients());
  if (clients) {
    people.replaceChildren(
      el('thead', {}, el('tr', {}, el('th', { class: 'number' }, 'Client id'), el('th', {}, 'Name'), el('th', {}, ''))),
      el('tbody', {}, clients.map((entry) => el('tr', {},
        el('td', { class: 'number' }, String(entry.clientId)),
        el('td', {}, entry.name),
        el('td', {}, el('button', { type: 'button', onclick: () => {
          to.value = String(entry.clientId);
          form.querySelector('textarea').focus();
        } }, 'Write to'))))));
  }
  const inbox = el('ol', { class: 'messages', id: 'inbox', 'aria-live': 'polite' });
  const show = (message) => {
    const item = renderMessage(message);
    item.querySelector('.sender').textContent = `${message.from.name} (client ${message.from.clientId})`;
    inbox.prepend(item);
  };
  for (const message of [...app.inbox].reverse()) show(message);
  app.unread = 0;
  showUnread();
  const listener = (message) => {
    show(message);
    app.unread = 0;
    showUnread();
  };
  app.directListeners.add(listener);
  onLeave(() => app.directListeners.delete(listener));
  page(view, 'Direct messages',
    el('section', { 'aria-label': 'Send' }, el('h2', {}, 'Send'), form, results),
    el('section', { 'aria-label': 'Inbox' }, el('h2', {}, 'Inbox'), inbox),
    clients ? el('section', { 'aria-label': 'Connected clients' }, el('h2', {}, 'Connected clients'), people) : null);
  to.focus();
}
