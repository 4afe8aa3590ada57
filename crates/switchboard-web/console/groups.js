// Groups: the directory (join, leave, create), and a group's page with its members (who
// is online) and its conversation, live from the session's group feed.

import { app, onLeave } from './app.js';
import { el, page, attempt, renderMessage, composer, showError, localError } from './ui.js';

export async function groupsPage(view) {
  const table = el('table', { class: 'listing', id: 'group-list' });
  const refresh = async () => {
    const groups = await attempt(() => app.client.groups());
    if (!groups) return;
    groups.sort((a, b) => a.name.localeCompare(b.name));
    table.replaceChildren(
      el('thead', {}, el('tr', {}, el('th', {}, 'Group'), el('th', {}, 'Description'), el('th', { class: 'number' }, 'Members'), el('th', {}, ''))),
      el('tbody', {}, groups.map((group) => el('tr', {},
        el('td', {}, el('a', { href: `#/group/${encodeURIComponent(group.name)}` }, group.name)),
        el('td', {}, group.description || ''),
        el('td', { class: 'number' }, group.members),
        el('td', {}, el('button', { type: 'button', 'data-join': group.name, onclick: async () => {
          const joined = await attempt(async () => {
            await app.client.joinGroup(group.name);
            return true;
          });
          if (joined) location.hash = `#/group/${encodeURIComponent(group.name)}`;
        } }, 'Join'))))));
    if (groups.length === 0) table.replaceChildren(el('caption', {}, 'No groups yet.'));
  };
  const name = el('input', { id: 'new-group', required: true, placeholder: 'team.ops' });
  const description = el('input', { id: 'new-group-description', placeholder: 'what it is for' });
  const create = el('form', { class: 'inline', onsubmit: async (event) => {
    event.preventDefault();
    const group = name.value.trim();
    const made = await attempt(async () => {
      await app.client.createGroup(group, description.value);
      // Whoever makes a group means to be in it.
      await app.client.joinGroup(group);
      return true;
    });
    if (made) location.hash = `#/group/${encodeURIComponent(group)}`;
  } },
  el('label', { for: 'new-group' }, 'New group'), name,
  el('label', { for: 'new-group-description' }, 'Description'), description,
  el('button', { type: 'submit' }, 'Create'));
  page(view, 'Groups', create, table);
  await refresh();
}

export async function groupPage(view, name) {
  const client = app.client;
  const members = el('ul', { class: 'members', id: 'members' });
  const messages = el('ol', { class: 'messages', id: 'messages', 'aria-live': 'polite' });
  const scroller = el('div', { class: 'scroller', tabindex: 0, 'aria-label': `Conversation of ${name}` }, messages);
  const showMembers = async () => {
    let list;
    try {
      list = await client.groupMembers(name);
    } catch (error) {
      if (error.code !== 'FORBIDDEN') {
        showError(error);
        return;
      }
      join.hidden = false;
      leave.hidden = true;
      members.replaceChildren(el('li', {}, 'Join the group to see its members and conversation.'));
      return;
    }
    const self = client.session.user ?? client.session.name;
    const member = list.some((entry) => (entry.user || entry.name) === self);
    join.hidden = member;
    leave.hidden = !member;
    members.replaceChildren(...list.map((member) => el('li', { class: member.online ? 'online' : 'offline' },
      el('span', { class: 'dot', 'aria-hidden': 'true' }),
      member.user || member.name,
      el('span', { class: 'visually-hidden' }, member.online ? ' (online)' : ' (offline)'))));
  };
  const shown = new Set();
  const add = (message) => {
    const key = message.id ?? `${message.seq}`;
    if (shown.has(key)) return;
    shown.add(key);
    messages.append(renderMessage(message));
    scroller.scrollTop = scroller.scrollHeight;
  };
  const loadConversation = async () => {
    if (leave.hidden) return;
    const history = await attempt(() => client.groupMessages(name, { last: 50 }));
    for (const message of history ?? []) add(message);
  };
  const join = el('button', { type: 'button', id: 'join-group', onclick: async () => {
    const done = await attempt(async () => {
      await client.joinGroup(name);
      return true;
    });
    if (done) {
      await showMembers();
      await loadConversation();
    }
  } }, 'Join');
  const leave = el('button', { type: 'button', id: 'leave-group', onclick: async () => {
    const done = await attempt(async () => {
      await client.leaveGroup(name);
      return true;
    });
    if (done) location.hash = '#/groups';
  } }, 'Leave');
  const { form } = composer({
    label: `Message to ${name}`,
    send: (body, contentType, onProgress) => client.post(name, body, { contentType, onProgress }),
  });
  page(view, name,
    el('div', { class: 'group-layout' },
      el('section', { class: 'conversation', 'aria-label': 'Conversation' }, scroller, form),
      el('aside', { 'aria-label': 'Members' }, el('h2', {}, 'Members'), members, el('div', { class: 'buttons' }, join, leave))));

  const listener = (item) => {
    if (item.group !== name) return;
    if (item.kind === 'message' && item.message) add(item.message);
    else if (item.kind === 'deleted') {
      location.hash = '#/groups';
      showError(localError('NOT_FOUND', `the group ${name} was deleted`));
    } else showMembers();
  };
  app.groupListeners.add(listener);
  onLeave(() => app.groupListeners.delete(listener));
  // Online status changes without a group event (a member's session ending).
  const timer = setInterval(showMembers, 3000);
  onLeave(() => clearInterval(timer));
  await showMembers();
  await loadConversation();
  form.querySelector('textarea').focus();
}
