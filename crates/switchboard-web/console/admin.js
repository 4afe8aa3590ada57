// Administration: live charts of the server's counters (polled every second through
// stats()), the connected clients, and reload and stop.

import { app, onLeave } from './app.js';
import { el, page, attempt, formatTime, showError } from './ui.js';

const POINTS = 60;
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attributes = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

/** A bar chart of the last POINTS values (one a second, newest on the right), in SVG. */
function chart(title, unit) {
  const width = 300;
  const height = 100;
  const bars = svg('g', { class: 'bars' });
  const axis = svg('line', { x1: 0, y1: height, x2: width, y2: height, class: 'axis' });
  const drawing = svg('svg', { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
  drawing.append(axis, bars);
  const now = el('span', { class: 'now' }, '–');
  const peak = el('span', { class: 'peak' });
  const figure = el('figure', { class: 'chart' },
    el('figcaption', {}, title, ' ', now, ' ', unit, ' ', peak), drawing);
  const values = [];
  return {
    figure,
    push(value) {
      values.push(value);
      if (values.length > POINTS) values.shift();
      const max = Math.max(1, ...values);
      const step = width / POINTS;
      const offset = POINTS - values.length;
      bars.replaceChildren(...values.map((v, i) => {
        const barHeight = Math.max(v > 0 ? 2 : 0, (v / max) * (height - 4));
        return svg('rect', {
          x: ((offset + i) * step + 0.5).toFixed(1),
          y: (height - barHeight).toFixed(1),
          width: (step - 1).toFixed(1),
          height: barHeight.toFixed(1),
        });
      }));
      now.textContent = Number.isInteger(value) ? String(value) : value.toFixed(1);
      peak.textContent = `(peak ${max})`;
    },
  };
}

function asMap(stats) {
  return new Map(stats.map((stat) => [stat.name, Number(stat.value)]));
}

export async function adminPage(view) {
  const client = app.client;
  const incoming = chart('Messages in', '/s');
  const outgoing = chart('Messages out', '/s');
  const connections = chart('Connections', 'open');
  const counters = el('dl', { class: 'counters', id: 'counters' });
  const clientTable = el('table', { class: 'listing', id: 'admin-clients' });
  const status = el('p', { class: 'status', id: 'admin-status', 'aria-live': 'polite' });
  const reload = el('button', { type: 'button', id: 'reload-server', onclick: async () => {
    const done = await attempt(async () => {
      await client.reloadServer();
      return true;
    });
    if (done) status.textContent = 'The configuration was reloaded.';
  } }, 'Reload configuration');
  const stop = el('button', { type: 'button', id: 'stop-server', class: 'danger', onclick: async () => {
    if (!window.confirm('Stop the server? Every session ends.')) return;
    const done = await attempt(async () => {
      await client.stopServer();
      return true;
    });
    if (done) status.textContent = 'The server is stopping.';
  } }, 'Stop server');
  page(view, 'Server',
    el('div', { class: 'charts' }, incoming.figure, outgoing.figure, connections.figure),
    el('div', { class: 'buttons' }, reload, stop), status,
    el('h2', {}, 'Clients'), clientTable,
    el('h2', {}, 'Counters'), counters);

  let previous = null;
  let previousAt = 0;
  let failed = false;
  const poll = async () => {
    let stats;
    try {
      stats = asMap(await client.stats());
    } catch (error) {
      if (!failed) showError(error);
      failed = true;
      return;
    }
    const at = performance.now();
    if (previous) {
      const seconds = Math.max(0.001, (at - previousAt) / 1000);
      const rate = (name) => Math.max(0, ((stats.get(name) ?? 0) - (previous.get(name) ?? 0)) / seconds);
      incoming.push(Math.round(rate('messages_published') * 10) / 10);
      outgoing.push(Math.round(rate('messages_delivered') * 10) / 10);
    }
    const open = stats.has('connections')
      ? stats.get('connections')
      : (stats.get('connections_total') ?? 0) - (stats.get('connections_closed') ?? 0);
    connections.push(open);
    previous = stats;
    previousAt = at;
    counters.replaceChildren(...[...stats].flatMap(([name, value]) => [el('dt', {}, name), el('dd', {}, value)]));
  };
  const listClients = async () => {
    const clients = await attempt(() => client.clients());
    if (!clients) return;
    clientTable.replaceChildren(
      el('thead', {}, el('tr', {}, el('th', { class: 'number' }, 'Client id'), el('th', {}, 'Name'), el('th', {}, 'Connected since'))),
      el('tbody', {},
        el('tr', { class: 'self' },
          el('td', { class: 'number' }, String(client.session.clientId)),
          el('td', {}, `${client.session.name} (this console)`), el('td', {}, '')),
        clients.map((entry) => el('tr', {},
        el('td', { class: 'number' }, String(entry.clientId)), el('td', {}, entry.name),
        el('td', {}, formatTime(entry.connectedSinceUs))))));
  };
  await poll();
  await listClients();
  const timer = setInterval(() => {
    poll();
  }, 1000);
  const clientsTimer = setInterval(listClients, 5000);
  onLeave(() => {
    clearInterval(timer);
    clearInterval(clientsTimer);
  });
}
