// Channels: the list with counts, creating one, a channel's page (history loaded further
// back as it scrolls up, live messages, a composer held to the channel's character
// limit), and following a wildcard or a hashtag.

import { app, onLeave } from './app.js';
import { el, page, attempt, renderMessage, composer, showError } from './ui.js';

const PAGE = 50;

export async function channelsPage(view) {
  const list = el('table', { class: 'listing', id: 'channel-list' });
  const refresh = async () => {
    const channels = await attempt(() => app.client.channels());
    if (!channels) return;
    channels.sort((a, b) => a.name.localeCompare(b.name));
    list.replaceChildren(
      el('thead', {}, el('tr', {}, el('th', {}, 'Channel'), el('th', { class: 'number' }, 'Messages'), el('th', { class: 'number' }, 'Max characters'))),
      el('tbody', {}, channels.map((channel) => el('tr', {},
        el('td', {}, el('a', { href: `#/channel/${encodeURIComponent(channel.name)}` }, channel.name)),
        el('td', { class: 'number' }, channel.messages),
        el('td', { class: 'number' }, channel.maxChars ?? '—')))));
    if (channels.length === 0) list.replaceChildren(el('caption', {}, 'No channels yet.'));
  };
  const name = el('input', { id: 'new-channel', required: true, placeholder: 'news.sports' });
  const maxChars = el('input', { id: 'new-channel-max-chars', type: 'number', min: 1, placeholder: 'none' });
  const create = el('form', { class: 'inline', onsubmit: async (event) => {
    event.preventDefault();
    const options = maxChars.value ? { maxChars: Number(maxChars.value) } : {};
    const made = await attempt(() => app.client.createChannel(name.value.trim(), options));
    if (made !== undefined) location.hash = `#/channel/${encodeURIComponent(name.value.trim())}`;
  } },
  el('label', { for: 'new-channel' }, 'New channel'), name,
  el('label', { for: 'new-channel-max-chars' }, 'Max characters'), maxChars,
  el('button', { type: 'submit' }, 'Create'));
  const open = el('input', { id: 'open-channel', placeholder: 'channel name' });
  const opener = el('form', { class: 'inline', onsubmit: (event) => {
    event.preventDefault();
    if (open.value.trim()) location.hash = `#/channel/${encodeURIComponent(open.value.trim())}`;
  } }, el('label', { for: 'open-channel' }, 'Open'), open, el('button', { type: 'submit' }, 'Open'));
  page(view, 'Channels', opener, create, list);
  await refresh();
  const timer = setInterval(refresh, 5000);
  onLeave(() => clearInterval(timer));
}

export async function channelPage(view, name) {
  const client = app.client;
  const info = (await attempt(() => client.channels()))?.find((channel) => channel.name === name);
  const messages = el('ol', { class: 'messages', id: 'messages', 'aria-live': 'polite' });
  const status = el('p', { class: 'status history-edge', 'aria-live': 'polite' });
  const scroller = el('div', { class: 'scroller', tabindex: 0, 'aria-label': `Messages of ${name}` }, status, messages);
  const maxChars = info?.maxChars ?? null;
  const { form } = composer({
    maxChars,
    label: `Message to ${name}`,
    send: (body, contentType, onProgress) => client.publish(name, body, { contentType, onProgress }),
  });
  const count = el('span', { id: 'message-count' });
  let total = info?.messages ?? 0;
  const showCount = () => {
    count.textContent = total === 1 ? '1 message' : `${total} messages`;
  };
  showCount();
  page(view, name,
    el('p', { class: 'subtitle' }, count, maxChars ? ` · at most ${maxChars} characters` : ''),
    scroller, form);

  const shown = new Map();
  let oldest = null;
  let exhausted = false;
  const nearBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 60;
  const add = (message) => {
    if (shown.has(message.seq)) return;
    const item = renderMessage(message);
    shown.set(message.seq, item);
    const image = item.querySelector('img');
    // An image takes its height once loaded: a list read at its end stays at its end.
    image?.addEventListener('load', () => {
      const below = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight;
      if (below < 60 + image.offsetHeight) scroller.scrollTop = scroller.scrollHeight;
    });
    const after = [...shown.keys()].filter((seq) => seq > message.seq).sort((a, b) => a - b)[0];
    if (after !== undefined) messages.insertBefore(item, shown.get(after));
    else messages.append(item);
    if (oldest === null || message.seq < oldest) oldest = message.seq;
  };

  let live = null;
  try {
    live = await client.subscribe(name);
  } catch (error) {
    showError(error);
  }
  if (live) {
    onLeave(() => live.close());
    (async () => {
      try {
        for await (const message of live) {
          const stick = nearBottom();
          if (!shown.has(message.seq)) {
            total += 1;
            showCount();
          }
          add(message);
          if (stick) scroller.scrollTop = scroller.scrollHeight;
        }
      } catch (error) {
        if (app.client === client) showError(error);
      }
    })();
  }

  const recent = info && info.messages > 0
    ? await attempt(() => client.history(name, { last: PAGE }))
    : [];
  for (const message of recent ?? []) add(message);
  scroller.scrollTop = scroller.scrollHeight;

  let loading = false;
  const loadOlder = async () => {
    if (loading || exhausted || oldest === null) return;
    const first = info?.firstSeq ?? 1;
    if (oldest <= first) {
      exhausted = true;
      status.textContent = 'The beginning of the history.';
      return;
    }
    loading = true;
    status.textContent = 'Loading older messages…';
    const from = Math.max(first, oldest - PAGE);
    const before = scroller.scrollHeight;
    const older = await attempt(() => client.history(name, { sinceSeq: from, limit: oldest - from }));
    loading = false;
    status.textContent = '';
    if (!older || older.length === 0) {
      exhausted = true;
      status.textContent = 'The beginning of the history.';
      return;
    }
    for (const message of older) add(message);
    scroller.scrollTop += scroller.scrollHeight - before;
  };
  scroller.addEventListener('scroll', () => {
    if (scroller.scrollTop < 40) loadOlder();
  });
  form.querySelector('textarea').focus();
}

/** Following a wildcard (news.>) or a hashtag (#rust): live, after the recent ones. */
export async function followPage(view, pattern) {
  const input = el('input', { id: 'follow-pattern', value: pattern, placeholder: 'news.* or news.> or #tag', required: true });
  const form = el('form', { class: 'inline', onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/follow/${encodeURIComponent(input.value.trim())}`;
  } }, el('label', { for: 'follow-pattern' }, 'Pattern or hashtag'), input, el('button', { type: 'submit' }, 'Follow'));
  const messages = el('ol', { class: 'messages', id: 'messages', 'aria-live': 'polite' });
  const status = el('p', { class: 'status', id: 'follow-status' });
  page(view, pattern ? `Following ${pattern}` : 'Follow', form,
    el('p', { class: 'subtitle' }, 'A wildcard: * is one token, > the rest. A hashtag: #tag, as written in messages.'),
    status, el('div', { class: 'scroller' }, messages));
  if (!pattern) {
    input.focus();
    return;
  }
  const client = app.client;
  const seen = new Set();
  const add = (message) => {
    const key = `${message.channel}/${message.id}`;
    if (seen.has(key)) return;
    seen.add(key);
    messages.prepend(renderMessage(message, { showChannel: true }));
  };
  let live;
  try {
    live = await client.subscribe(pattern);
  } catch (error) {
    showError(error);
    return;
  }
  onLeave(() => live.close());
  status.textContent = 'Live: new messages appear at the top.';
  if (pattern.startsWith('#')) {
    const tagged = await attempt(() => client.tagMessages(pattern.slice(1), { last: PAGE }));
    for (const message of tagged ?? []) add(message);
  }
  (async () => {
    try {
      for await (const message of live) add(message);
    } catch (error) {
      if (app.client === client) showError(error);
    }
  })();
}
