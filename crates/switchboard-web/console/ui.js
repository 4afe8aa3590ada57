// What every page of the console shares: building elements, showing errors, and
// rendering messages (text with clickable hashtags, images, downloads).

/** Creates an element: el('button', { type: 'submit', onclick }, 'Send'). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (value === true) node.setAttribute(key, '');
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** The error banner: the protocol's code and number, then the server's message. */
export function showError(error) {
  const banner = document.getElementById('error');
  banner.replaceChildren();
  if (!error) {
    banner.hidden = true;
    return;
  }
  const code = error.code ? `${error.code}${error.number ? ` (${error.number})` : ''}` : 'Error';
  banner.append(el('strong', { class: 'code' }, code), ' ', error.message || String(error),
    el('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss',
      onclick: () => showError(null) }, '×'));
  banner.hidden = false;
}

export function clearError() {
  showError(null);
}

/** Runs an action, showing its failure in the banner; returns its result or undefined. */
export async function attempt(action) {
  try {
    const result = await action();
    return result;
  } catch (error) {
    showError(error);
    return undefined;
  }
}

/** A refusal made by the page itself, shaped like the server's. */
export function localError(code, message) {
  const error = new Error(message);
  error.code = code;
  return error;
}

export function formatTime(timestampUs) {
  if (!timestampUs) return '';
  const date = new Date(Number(timestampUs) / 1000);
  return date.toLocaleString();
}

/** Counts characters as the server does: Unicode scalar values, not UTF-16 units. */
export function charCount(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

const TEXTUAL = /^(text\/|application\/(json|xml|javascript)|$)/;

function isText(contentType) {
  return TEXTUAL.test(contentType || '');
}

/** Text with each #hashtag as a link to follow it. */
export function linkifyHashtags(text) {
  const parts = [];
  const pattern = /(^|[^\p{L}\p{N}_#&])#([\p{L}\p{N}_]+)/gu;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    const start = match.index + match[1].length;
    parts.push(text.slice(last, start));
    const tag = match[2];
    parts.push(el('a', { class: 'hashtag', href: `#/follow/${encodeURIComponent('#' + tag)}` }, `#${tag}`));
    last = start + 1 + tag.length;
  }
  parts.push(text.slice(last));
  return parts;
}

function bodyOf(message) {
  const type = message.contentType || '';
  if (isText(type)) {
    let text;
    try {
      text = message.text();
    } catch {
      text = null;
    }
    if (text !== null) return el('div', { class: 'text' }, linkifyHashtags(text));
  }
  const blob = new Blob([message.body], { type: type || 'application/octet-stream' });
  const url = URL.createObjectURL(blob);
  const extension = (type.split('/')[1] || 'bin').split(/[;+]/)[0];
  const name = `${(message.channel || 'message').replace(/[^\w.-]/g, '_')}-${message.seq ?? 'direct'}.${extension}`;
  const download = el('a', { class: 'download', href: url, download: name },
    `Download ${type || 'binary'} (${message.body.length} bytes)`);
  if (type.startsWith('image/')) {
    return el('div', { class: 'binary' },
      el('img', { src: url, alt: `image from ${message.from?.name ?? 'unknown'}`, class: 'image' }), download);
  }
  return el('div', { class: 'binary' }, download);
}

/** One message as a list item. */
export function renderMessage(message, { showChannel = false } = {}) {
  const sender = message.from ? message.from.name : 'server';
  return el('li', { class: 'message', 'data-seq': message.seq ?? '', 'data-id': message.id ?? '' },
    el('div', { class: 'meta' },
      showChannel && message.channel
        ? el('a', { class: 'channel', href: `#/channel/${encodeURIComponent(message.channel)}` }, message.channel)
        : null,
      el('span', { class: 'sender' }, sender),
      el('time', {}, formatTime(message.timestampUs))),
    bodyOf(message));
}

/**
 * A composer: a text area that counts characters against `maxChars` (refusing more before
 * sending), Enter sends and Shift+Enter starts a new line, and a file picker for binary
 * bodies. `send(body, contentType)` does the sending.
 */
export function composer({ maxChars = null, send, label = 'Message', fileInput = true }) {
  const area = el('textarea', { rows: 2, 'aria-label': label, placeholder: `${label} (Enter sends, Shift+Enter for a new line)` });
  const counter = el('span', { class: 'counter', 'aria-live': 'polite' });
  const file = fileInput ? el('input', { type: 'file', 'aria-label': 'Attach a file' }) : null;
  const button = el('button', { type: 'submit' }, 'Send');
  const progress = el('progress', { max: 1, value: 0, hidden: true, 'aria-label': 'Upload progress' });
  const form = el('form', { class: 'composer' }, area,
    el('div', { class: 'composer-bar' }, counter, file, progress, button));

  const update = () => {
    const count = charCount(area.value);
    counter.textContent = maxChars ? `${count} / ${maxChars}` : `${count}`;
    counter.classList.toggle('over', Boolean(maxChars) && count > maxChars);
  };
  update();
  area.addEventListener('input', update);
  area.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const picked = file?.files?.[0];
    if (picked) {
      progress.hidden = false;
      progress.value = 0;
      button.disabled = true;
      const onProgress = (done, total) => {
        progress.max = total || 1;
        progress.value = done;
      };
      const sent = await attempt(async () => {
        await send(picked, picked.type || 'application/octet-stream', onProgress);
        return true;
      });
      button.disabled = false;
      progress.hidden = true;
      if (sent) {
        file.value = '';
        clearError();
      }
      return;
    }
    const text = area.value;
    if (text.trim() === '') return;
    const count = charCount(text);
    if (maxChars && count > maxChars) {
      showError(localError('TOO_LONG',
        `this message has ${count} characters; the channel allows at most ${maxChars}. Nothing was sent.`));
      return;
    }
    button.disabled = true;
    const sent = await attempt(async () => {
      await send(text, undefined);
      return true;
    });
    button.disabled = false;
    if (sent) {
      area.value = '';
      update();
      clearError();
    }
    area.focus();
  });
  return { form, area };
}

/** Fills `view` with a page: a heading then the parts. */
export function page(view, title, ...parts) {
  view.replaceChildren(el('h1', { tabindex: -1 }, title), ...parts);
  document.title = `${title} · Switchboard`;
}
