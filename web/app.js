// ferry's chat page: picks a model from /v1/models and streams /v1/chat/completions (server-sent
// events) into the conversation. Stop aborts the fetch, which closes the connection, and the server
// cancels the request. The conversation and settings live in localStorage, the API key (when the
// server wants one) in sessionStorage. Model text goes into the page only through markdown.js,
// which sets text, never markup.
import { renderMarkdown } from './markdown.js';

const STORE_KEY = 'ferry.chat.v1';
const KEY_KEY = 'ferry.apiKey';

const $ = (id) => document.getElementById(id);
const ui = {
  model: $('model'), reloadModels: $('reload-models'), toggleSettings: $('toggle-settings'),
  settings: $('settings'), newChat: $('new-chat'), system: $('system'), temperature: $('temperature'),
  topP: $('top-p'), maxTokens: $('max-tokens'), settingsKey: $('settings-api-key'), auth: $('auth'),
  authMessage: $('auth-message'), authForm: $('auth-form'), apiKey: $('api-key'), notice: $('notice'),
  messages: $('messages'), composer: $('composer'), prompt: $('prompt'), send: $('send'), stop: $('stop'),
};

// ---- state ----------------------------------------------------------------------------------------

// messages: [{role: 'user' | 'assistant', content, stats?: {ttft_ms, tokens, tokens_per_s, stopped},
//             error?: string}]
const state = loadState();
let controller = null; // the AbortController of the stream in flight

function loadState() {
  const fallback = { messages: [], settings: {} };
  try {
    const saved = JSON.parse(localStorage.getItem(STORE_KEY) ?? 'null');
    if (saved && Array.isArray(saved.messages)) {
      return { messages: saved.messages.filter(validMessage), settings: saved.settings ?? {} };
    }
  } catch {
    // A broken entry: start a new conversation.
  }
  return fallback;
}

function validMessage(m) {
  return m && (m.role === 'user' || m.role === 'assistant') && typeof m.content === 'string';
}

function saveState() {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(state));
  } catch {
    showNotice('The conversation could not be saved (browser storage is full or off).');
  }
}

function readSettings() {
  state.settings = {
    model: ui.model.value || state.settings.model,
    system: ui.system.value,
    temperature: ui.temperature.value,
    top_p: ui.topP.value,
    max_tokens: ui.maxTokens.value,
  };
  saveState();
}

function applySettings() {
  const s = state.settings;
  if (typeof s.system === 'string') ui.system.value = s.system;
  if (s.temperature !== undefined) ui.temperature.value = s.temperature;
  if (s.top_p !== undefined) ui.topP.value = s.top_p;
  if (s.max_tokens !== undefined) ui.maxTokens.value = s.max_tokens;
  ui.settingsKey.value = apiKey();
}

function apiKey() {
  return sessionStorage.getItem(KEY_KEY) ?? '';
}

function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_KEY, key);
  else sessionStorage.removeItem(KEY_KEY);
  ui.settingsKey.value = key;
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = apiKey();
  if (key) h.Authorization = 'Bearer ' + key;
  return h;
}

// ---- messages shown -------------------------------------------------------------------------------

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = !text;
}

function askForKey(message) {
  ui.authMessage.textContent = message;
  ui.auth.hidden = false;
  ui.apiKey.focus();
}

// The text to show for an HTTP error answer; `error` is OpenAI's error object when there is one.
function describeError(status, error) {
  const message = error?.message ?? '';
  if (status === 401) {
    return 'The server needs an API key' + (apiKey() ? ' (the one given was refused)' : '') + '.';
  }
  if (status === 429) {
    return 'The server is busy (429): its queue is full. Wait a moment and send again.';
  }
  if (error?.code === 'context_length_exceeded' || /context window/.test(message)) {
    return 'The conversation is too long for the model\'s context window. Start a new chat, shorten the ' +
      'messages or lower Max tokens. (' + message + ')';
  }
  return 'Error ' + status + (message ? ': ' + message : '');
}

function statsText(stats) {
  const parts = [];
  if (stats.tokens !== undefined) parts.push(stats.tokens + ' tokens');
  if (stats.tokens_per_s !== undefined) parts.push(stats.tokens_per_s.toFixed(1) + ' tokens/s');
  if (stats.ttft_ms !== undefined) parts.push('TTFT ' + Math.round(stats.ttft_ms) + ' ms');
  if (stats.stopped) parts.push('stopped');
  return parts.join(' · ');
}

function messageNode(message) {
  const node = document.createElement('article');
  node.className = 'msg ' + message.role;
  const who = document.createElement('div');
  who.className = 'who';
  who.textContent = message.role === 'user' ? 'You' : (message.model ?? 'Assistant');
  const content = document.createElement('div');
  content.className = 'content';
  const stats = document.createElement('div');
  stats.className = 'stats';
  node.append(who, content, stats);
  updateMessageNode(node, message);
  return node;
}

function updateMessageNode(node, message) {
  const content = node.querySelector('.content');
  if (message.role === 'user') content.textContent = message.content;
  else renderMarkdown(content, message.content);
  const stats = node.querySelector('.stats');
  stats.textContent = message.stats ? statsText(message.stats) : '';
  let error = node.querySelector('.error');
  if (message.error) {
    if (!error) {
      error = document.createElement('div');
      error.className = 'error';
      node.appendChild(error);
    }
    error.textContent = message.error;
  } else if (error) {
    error.remove();
  }
}

function renderAll() {
  ui.messages.replaceChildren(...state.messages.map(messageNode));
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function setStreaming(streaming) {
  document.body.dataset.state = streaming ? 'streaming' : 'idle';
  ui.send.hidden = streaming;
  ui.stop.hidden = !streaming;
  ui.model.disabled = streaming;
}

// ---- models ---------------------------------------------------------------------------------------

async function loadModels() {
  let res;
  try {
    res = await fetch('/v1/models', { headers: headers() });
  } catch (e) {
    showNotice('The server cannot be reached: ' + e.message);
    return;
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    if (res.status === 401) askForKey(describeError(401, body.error));
    else showNotice(describeError(res.status, body.error));
    return;
  }
  ui.auth.hidden = true;
  const models = (body.data ?? []).map((m) => m.id).filter((id) => typeof id === 'string');
  const options = models.map((id) => {
    const option = document.createElement('option');
    option.value = id;
    option.textContent = id;
    const model = body.data.find((m) => m.id === id);
    if (model?.max_model_len) option.title = 'context window: ' + model.max_model_len + ' tokens';
    return option;
  });
  ui.model.replaceChildren(...options);
  if (models.includes(state.settings.model)) ui.model.value = state.settings.model;
  showNotice(models.length === 0 ? 'No language model is ready on this server yet.' : '');
}

// ---- chat -----------------------------------------------------------------------------------------

function requestBody() {
  const s = state.settings;
  const messages = [];
  if (s.system?.trim()) messages.push({ role: 'system', content: s.system });
  for (const m of state.messages) {
    // Answers that failed before any text are not part of the conversation the model sees.
    if (m.role === 'assistant' && m.content === '') continue;
    messages.push({ role: m.role, content: m.content });
  }
  const body = { model: ui.model.value, messages, stream: true, stream_options: { include_usage: true } };
  const number = (v) => (v === '' || v === undefined ? undefined : Number(v));
  if (number(s.temperature) !== undefined) body.temperature = number(s.temperature);
  if (number(s.top_p) !== undefined) body.top_p = number(s.top_p);
  if (number(s.max_tokens) !== undefined) body.max_tokens = number(s.max_tokens);
  return body;
}

// Calls onEvent(object) for each JSON "data:" event of a server-sent-event body until [DONE].
async function readEvents(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      const data = event.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart())
        .join('\n');
      if (data === '[DONE]') return;
      if (data) onEvent(JSON.parse(data));
    }
  }
}

async function send(text) {
  if (!ui.model.value) {
    showNotice('Pick a model first (none is ready, or the list needs an API key).');
    return;
  }
  readSettings();
  const user = { role: 'user', content: text };
  const answer = { role: 'assistant', content: '', model: ui.model.value };
  state.messages.push(user);
  const body = requestBody();
  state.messages.push(answer);
  const userNode = messageNode(user);
  const answerNode = messageNode(answer);
  ui.messages.append(userNode, answerNode);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  showNotice('');

  controller = new AbortController();
  setStreaming(true);
  const start = performance.now();
  let first = null;
  let chunks = 0;
  let usage = null;
  let redraw = 0;
  const draw = () => {
    redraw = 0;
    updateMessageNode(answerNode, answer);
    ui.messages.scrollTop = ui.messages.scrollHeight;
  };
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!res.ok) {
      const error = (await res.json().catch(() => ({}))).error;
      // Nothing was generated: the question goes back into the box to send again.
      state.messages.splice(state.messages.indexOf(user), 2);
      userNode.remove();
      answerNode.remove();
      ui.prompt.value = text;
      if (res.status === 401) askForKey(describeError(401, error));
      else showNotice(describeError(res.status, error));
      return;
    }
    await readEvents(res, (event) => {
      if (event.error) throw new Error(event.error.message ?? 'the server ended the stream with an error');
      if (event.usage) usage = event.usage;
      const delta = event.choices?.[0]?.delta?.content;
      if (delta) {
        if (first === null) first = performance.now();
        ++chunks;
        answer.content += delta;
        // Redrawn at most every 50 ms (a timer, not requestAnimationFrame, which a hidden tab
        // never runs: the text would then appear only at the end).
        if (!redraw) redraw = setTimeout(draw, 50);
      }
    });
  } catch (e) {
    if (e.name === 'AbortError') answer.stopped = true;
    else answer.error = 'The answer broke off: ' + e.message;
  } finally {
    if (redraw) clearTimeout(redraw);
    const end = performance.now();
    if (state.messages.includes(answer)) {
      const tokens = usage?.completion_tokens ?? chunks;
      answer.stats = { tokens, stopped: answer.stopped === true };
      delete answer.stopped;
      if (first !== null) {
        answer.stats.ttft_ms = first - start;
        // Decode speed: tokens after the first over the time after the first.
        if (tokens > 1 && end > first) answer.stats.tokens_per_s = (tokens - 1) / ((end - first) / 1000);
      }
      updateMessageNode(answerNode, answer);
      saveState();
    }
    controller.abort(); // closes the connection if an error event broke off the reading
    controller = null;
    setStreaming(false);
  }
}

// ---- events ---------------------------------------------------------------------------------------

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || controller) return;
  ui.prompt.value = '';
  send(text);
});
ui.prompt.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.stop.addEventListener('click', () => controller?.abort());
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') controller?.abort();
});
ui.newChat.addEventListener('click', () => {
  controller?.abort();
  state.messages = [];
  saveState();
  renderAll();
  ui.prompt.focus();
});
ui.toggleSettings.addEventListener('click', () => {
  ui.settings.hidden = !ui.settings.hidden;
  ui.toggleSettings.setAttribute('aria-expanded', String(!ui.settings.hidden));
});
for (const input of [ui.system, ui.temperature, ui.topP, ui.maxTokens, ui.model]) {
  input.addEventListener('change', readSettings);
}
ui.settingsKey.addEventListener('change', () => {
  setApiKey(ui.settingsKey.value.trim());
  loadModels();
});
ui.authForm.addEventListener('submit', (e) => {
  e.preventDefault();
  setApiKey(ui.apiKey.value.trim());
  ui.apiKey.value = '';
  loadModels();
});
ui.reloadModels.addEventListener('click', loadModels);
// Another tab of the page changed the conversation: show it.
window.addEventListener('storage', (e) => {
  if (e.key !== STORE_KEY || controller) return;
  const saved = loadState();
  state.messages = saved.messages;
  renderAll();
});

applySettings();
renderAll();
setStreaming(false);
loadModels().finally(() => {
  document.body.dataset.ready = 'true';
});
