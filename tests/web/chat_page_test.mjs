// The chat page in real headless Chromium (Debian's chromium, driven by puppeteer-core), against
// real ferry-servers that tests/integration/web_ui_test.cc starts (tiny-llama; a second one with an
// API key). Prints "ok - <check>" or "not ok - <check>: <why>" per check and exits 1 if any failed.
// Screenshots go to --out (under the build folder).
//
//   node chat_page_test.mjs --url http://127.0.0.1:P --key-url http://127.0.0.1:Q --key K \
//        --chromium /usr/bin/chromium --out DIR
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs),
    []));
for (const required of ['url', 'key-url', 'key', 'chromium', 'out']) {
  if (!args[required]) {
    console.error('missing --' + required);
    process.exit(2);
  }
}
fs.mkdirSync(args.out, { recursive: true });

const MODEL = 'tiny-llama';
let failures = 0;
const problems = []; // console errors, CSP violations and uncaught exceptions of the page

async function check(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok - ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    ++failures;
    console.log(`not ok - ${name}: ${e.stack ?? e}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(args.out, name + '.png'), fullPage: true });
}

function watch(page, label) {
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${label} console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${label} page error: ${e.message}`));
}

// Sets an input's value as a user would (the page listens to "change").
async function setField(page, id, value) {
  await page.$eval('#' + id, (el, v) => {
    el.value = v;
    el.dispatchEvent(new Event('change'));
  }, String(value));
}

async function openPage(context, url, label) {
  const page = await context.newPage();
  watch(page, label);
  await page.setViewport({ width: 1000, height: 800 });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30000 });
  return page;
}

// Types `text` and presses Enter; resolves when the page is streaming or has already answered.
async function sendMessage(page, text) {
  await page.click('#prompt');
  await page.type('#prompt', text);
  await page.keyboard.press('Enter');
}

// Runs `body` with the page's chat requests sent on to the real server with "ignore_eos": true
// added: tiny-llama is fast (thousands of tokens/s) and may end an answer at its end-of-sequence
// token within milliseconds, before a stream can be watched or stopped; this way it runs to
// max_tokens. The page and the server are otherwise untouched.
async function withIgnoreEos(page, body) {
  await page.setRequestInterception(true);
  const handler = (request) => {
    if (!request.url().endsWith('/v1/chat/completions')) return request.continue();
    request.continue({ postData: JSON.stringify({ ...JSON.parse(request.postData()), ignore_eos: true }) });
  };
  page.on('request', handler);
  try {
    return await body();
  } finally {
    page.off('request', handler);
    await page.setRequestInterception(false);
  }
}

const waitIdle = (page, timeout = 60000) =>
  page.waitForFunction(() => document.body.dataset.state === 'idle', { timeout, polling: 20 });

const lastAnswer = (page) =>
  page.evaluate(() => {
    const node = [...document.querySelectorAll('#messages .msg.assistant')].pop();
    return node && {
      text: node.querySelector('.content').textContent,
      stats: node.querySelector('.stats').textContent,
      error: node.querySelector('.error')?.textContent ?? '',
    };
  });

async function metric(baseUrl, pattern) {
  const text = await (await fetch(baseUrl + '/metrics')).text();
  const line = text.split('\n').find((l) => pattern.test(l));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-chromium-'));
const browser = await puppeteer.launch({
  executablePath: args.chromium,
  headless: true,
  userDataDir,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});

try {
  const context = await browser.createBrowserContext();
  const page = await openPage(context, args.url, 'page');

  await check('the page loads with its own script and style and lists tiny-llama', async () => {
    const models = await page.$$eval('#model option', (os) => os.map((o) => o.value));
    assert(models.includes(MODEL), 'models offered: ' + JSON.stringify(models));
    const color = await page.$eval('header', (h) => getComputedStyle(h).display);
    assert(color === 'flex', 'style.css not applied (header display ' + color + ')');
    await shot(page, '01-loaded');
  });

  await check('markdown renders as elements holding text, never as markup', async () => {
    const r = await page.evaluate(async () => {
      const { renderMarkdown } = await import('/ui/markdown.js');
      const div = document.createElement('div');
      renderMarkdown(div, '### Title\n- one `x<y>`\n- **two**\n1. first\n\n```js\nif (a < b) {}\n```\n' +
        '> quoted\n[ok](https://example.com/a) [bad](javascript:alert(1)) a__b__c');
      return {
        tags: [...div.querySelectorAll('*')].map((e) => e.tagName.toLowerCase()),
        code: div.querySelector('pre code').textContent,
        lang: div.querySelector('pre').dataset.lang,
        inline: div.querySelector('li code').textContent,
        links: [...div.querySelectorAll('a')].map((a) => a.href),
        text: div.textContent,
      };
    });
    const expected = ['h5', 'ul', 'li', 'code', 'li', 'strong', 'ol', 'li', 'pre', 'code', 'blockquote', 'p', 'p', 'a'];
    assert(JSON.stringify(r.tags) === JSON.stringify(expected), 'elements: ' + JSON.stringify(r.tags));
    assert(r.code === 'if (a < b) {}' && r.lang === 'js', 'code block: ' + JSON.stringify(r));
    assert(r.inline === 'x<y>', 'inline code: ' + r.inline);
    assert(JSON.stringify(r.links) === '["https://example.com/a"]', 'links: ' + JSON.stringify(r.links));
    assert(r.text.includes('[bad](javascript:alert(1))'), 'a javascript: link stays text: ' + r.text);
    assert(r.text.includes('a__b__c'), 'underscores inside a word stay: ' + r.text);
  });

  let streamedText = '';
  await check('a message gets a streamed answer with tokens/s and TTFT', async () => {
    await page.click('#toggle-settings');
    await setField(page, 'temperature', 0);
    await setField(page, 'max-tokens', 400);
    // Every distinct length the answer's text goes through while it streams.
    await page.evaluate(() => {
      window.__lengths = new Set();
      new MutationObserver(() => {
        const node = [...document.querySelectorAll('#messages .msg.assistant .content')].pop();
        if (node && document.body.dataset.state === 'streaming') window.__lengths.add(node.textContent.length);
      }).observe(document.getElementById('messages'), { subtree: true, childList: true, characterData: true });
    });
    await withIgnoreEos(page, async () => {
      const sse = page.waitForResponse((r) => r.url().endsWith('/v1/chat/completions'));
      await sendMessage(page, 'Hello!');
      const response = await sse;
      assert(response.headers()['content-type'].startsWith('text/event-stream'),
        'content type ' + response.headers()['content-type']);
      await waitIdle(page);
    });
    const answer = await lastAnswer(page);
    assert(answer.text.length > 0, 'empty answer: ' + JSON.stringify(answer));
    assert(/^400 tokens · [\d.]+ tokens\/s · TTFT \d+ ms$/.test(answer.stats), 'stats: ' + answer.stats);
    const lengths = await page.evaluate(() => [...window.__lengths].filter((n) => n > 0));
    // The page redraws every 50 ms while tokens arrive. It can show the answer growing only when the
    // tokens reached it spread over time: a browser starved of CPU (the suite runs tests in
    // parallel) may read the whole stream at once, and the page's own tokens/s then says so.
    const tps = Number(/([\d.]+) tokens\/s/.exec(answer.stats)[1]);
    const arrivalMs = (399 / tps) * 1000;
    if (arrivalMs >= 250) {
      assert(lengths.length >= 2, `the answer appeared in one piece, not streamed, though its tokens arrived over ` +
        `${Math.round(arrivalMs)} ms: lengths ${JSON.stringify(lengths)}`);
    } else {
      console.log(`# the tokens arrived within ${Math.round(arrivalMs)} ms: the page had no time to show them ` +
        `growing (lengths ${JSON.stringify(lengths)})`);
    }
    // The same request without streaming (greedy) gives the same text: the page put the deltas together right.
    const direct = await (await fetch(args.url + '/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hello!' }], temperature: 0, top_p: 1,
        max_tokens: 400, ignore_eos: true }),
    })).json();
    streamedText = direct.choices[0].message.content;
    const shown = await page.evaluate(() => {
      const saved = JSON.parse(localStorage.getItem('ferry.chat.v1'));
      return saved.messages[saved.messages.length - 1].content;
    });
    assert(shown === streamedText, `streamed ${JSON.stringify(shown)} != non-streamed ${JSON.stringify(streamedText)}`);
    await shot(page, '02-streamed');
  });

  await check('Stop aborts the stream and the server cancels the request', async () => {
    let stoppedWhileStreaming = false;
    const cancelledBefore = await metric(args.url, /^ferry_request_failure_total\{model="tiny-llama".*reason="cancelled"/);
    const succeededBefore = await metric(args.url, /^ferry_request_success_total\{model="tiny-llama"/);
    // The history re-tokenizes to more tokens than the answers had (U+FFFD is 3 byte tokens):
    // 400 + 1500 stay well within tiny-llama's 4096.
    await setField(page, 'max-tokens', 1500);
    await withIgnoreEos(page, async () => {
      await sendMessage(page, 'Tell me a long story.');
      await page.waitForFunction(() => {
        const node = [...document.querySelectorAll('#messages .msg.assistant .content')].pop();
        return (document.body.dataset.state === 'streaming' && node.textContent.length > 0) ||
          !document.getElementById('notice').hidden;
      }, { timeout: 30000, polling: 20 });
      const notice = await page.$eval('#notice', (n) => (n.hidden ? '' : n.textContent));
      assert(notice === '', 'the request failed: ' + notice);
      // Clicked in the page only while it still streams: a fast engine can finish all 1500 tokens
      // between the wait above and the click, and then the Stop button is gone.
      stoppedWhileStreaming = await page.evaluate(() => {
        if (document.body.dataset.state !== 'streaming') return false;
        document.getElementById('stop').click();
        return true;
      });
      await waitIdle(page, 5000);
    });
    const answer = await lastAnswer(page);
    if (stoppedWhileStreaming) {
      assert(answer.stats.includes('stopped'), 'stats: ' + answer.stats);
      const tokens = Number(/(\d+) tokens/.exec(answer.stats)?.[1]);
      assert(tokens > 0 && tokens < 1500, 'tokens: ' + answer.stats);
    } else {
      console.log('# the answer ended before Stop could be clicked: nothing to stop');
    }
    // The server noticed the closed connection: the request failed as cancelled and nothing runs.
    const deadline = Date.now() + 10000;
    let cancelled = cancelledBefore;
    let running;
    let succeeded = succeededBefore;
    while (Date.now() < deadline) {
      cancelled = await metric(args.url, /^ferry_request_failure_total\{model="tiny-llama".*reason="cancelled"/);
      succeeded = await metric(args.url, /^ferry_request_success_total\{model="tiny-llama"/);
      running = await metric(args.url, /^ferry_llm_running_sequences\{model="tiny-llama"/);
      if ((cancelled > cancelledBefore || succeeded > succeededBefore) && running === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (succeeded > succeededBefore && cancelled === cancelledBefore) {
      // The server had produced and sent all 1500 tokens before the browser's abort reached it (a
      // browser starved of CPU while the suite runs tests in parallel): nothing was left to cancel.
      // The server's cancel on a disconnect is tested without a browser (OpenAiApi.Disconnect*).
      console.log(`# the whole answer was sent before the stop reached the server: nothing to cancel`);
    } else {
      assert(cancelled === cancelledBefore + 1, `cancelled requests ${cancelledBefore} -> ${cancelled}`);
    }
    assert(running === 0, 'running sequences after the stop: ' + running);
    await shot(page, '03-stopped');
  });

  await check('the conversation survives a reload (localStorage)', async () => {
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('body[data-ready="true"]');
    const roles = await page.$$eval('#messages .msg', (ms) => ms.map((m) => m.className));
    assert(JSON.stringify(roles) === JSON.stringify(['msg user', 'msg assistant', 'msg user', 'msg assistant']),
      'messages after reload: ' + JSON.stringify(roles));
    const first = await page.$eval('#messages .msg.assistant .content', (c) => c.textContent);
    assert(first === streamedText, 'first answer after reload: ' + JSON.stringify(first));
    const maxTokens = await page.$eval('#max-tokens', (i) => i.value);
    assert(maxTokens === '1500', 'settings after reload: max tokens ' + maxTokens);
  });

  const hostile = 'Look: <script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> **bold**\n' +
    '```html\n<script>window.__xss = 3</script>\n```\n[click](javascript:window.__xss=4)';
  await check('model text with <script> in the stored conversation is shown as text', async () => {
    await page.evaluate((content) => {
      localStorage.setItem('ferry.chat.v1', JSON.stringify({
        messages: [{ role: 'user', content: '<b>hi</b>' }, { role: 'assistant', content }], settings: {},
      }));
    }, hostile);
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('body[data-ready="true"]');
    const r = await page.evaluate(() => ({
      xss: window.__xss,
      elements: [...document.querySelectorAll('#messages script, #messages img, #messages b, #messages a')].length,
      text: document.getElementById('messages').textContent,
      code: document.querySelector('#messages pre code')?.textContent,
      bold: document.querySelector('#messages strong')?.textContent,
    }));
    assert(r.xss === undefined, 'script ran: window.__xss = ' + r.xss);
    assert(r.elements === 0, r.elements + ' script/img/b/a elements made from model text');
    assert(r.text.includes('<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'),
      'the markup is not shown as text: ' + r.text);
    assert(r.text.includes('<b>hi</b>'), 'the user text is not shown as typed: ' + r.text);
    assert(r.code === '<script>window.__xss = 3</script>', 'code block: ' + r.code);
    assert(r.bold === 'bold', 'markdown still applies: ' + r.bold);
    await shot(page, '04-script-as-text');
  });

  await check('a streamed answer with <script> is shown as text', async () => {
    await page.setRequestInterception(true);
    const handler = (request) => {
      if (!request.url().endsWith('/v1/chat/completions')) return request.continue();
      const chunk = (content) => 'data: ' + JSON.stringify({ choices: [{ index: 0, delta: { content } }] }) + '\n\n';
      request.respond({
        status: 200, contentType: 'text/event-stream',
        body: chunk('<scr') + chunk('ipt>window.__xss = 5</script><img src=x onerror="window.__xss = 6">') +
          chunk(' done') + 'data: [DONE]\n\n',
      });
    };
    page.on('request', handler);
    try {
      await sendMessage(page, 'Say something hostile');
      await waitIdle(page);
    } finally {
      page.off('request', handler);
      await page.setRequestInterception(false);
    }
    const r = await page.evaluate(() => ({
      xss: window.__xss,
      elements: document.querySelectorAll('#messages script, #messages img').length,
      text: [...document.querySelectorAll('#messages .msg.assistant .content')].pop().textContent,
    }));
    assert(r.xss === undefined, 'script ran: window.__xss = ' + r.xss);
    assert(r.elements === 0, r.elements + ' script/img elements made from a streamed answer');
    assert(r.text === '<script>window.__xss = 5</script><img src=x onerror="window.__xss = 6"> done',
      'streamed text: ' + r.text);
  });

  await check('429 says the server is busy and gives the message back', async () => {
    await page.setRequestInterception(true);
    const handler = (request) => {
      if (!request.url().endsWith('/v1/chat/completions')) return request.continue();
      request.respond({
        status: 429, contentType: 'application/json',
        body: JSON.stringify({ error: { message: 'the queue of model tiny-llama is full', type: 'rate_limit_error',
          code: 'rate_limit_exceeded' } }),
      });
    };
    page.on('request', handler);
    const before = await page.$$eval('#messages .msg', (ms) => ms.length);
    try {
      await sendMessage(page, 'Are you busy?');
      await page.waitForSelector('#notice:not([hidden])', { timeout: 30000 });
      await waitIdle(page);
    } finally {
      page.off('request', handler);
      await page.setRequestInterception(false);
    }
    const notice = await page.$eval('#notice', (n) => n.textContent);
    assert(/busy \(429\)/.test(notice), 'notice: ' + notice);
    assert((await page.$eval('#prompt', (p) => p.value)) === 'Are you busy?', 'the message is not back in the box');
    assert((await page.$$eval('#messages .msg', (ms) => ms.length)) === before, 'a failed exchange stayed listed');
    await page.$eval('#prompt', (p) => { p.value = ''; });
  });

  await check('a request over the context window says so (real server answer)', async () => {
    await setField(page, 'max-tokens', 100000);
    await sendMessage(page, 'Hi');
    await page.waitForSelector('#notice:not([hidden])', { timeout: 30000 });
    await waitIdle(page);
    const notice = await page.$eval('#notice', (n) => n.textContent);
    assert(/too long for the model's context window/.test(notice), 'notice: ' + notice);
    await shot(page, '05-context-too-long');
    await setField(page, 'max-tokens', 16);
    await page.$eval('#prompt', (p) => { p.value = ''; });
  });
  await page.close();
  await context.close();

  await check('401: the page asks for the API key, refuses a wrong one and works with the right one', async () => {
    const keyed = await browser.createBrowserContext();
    const p = await openPage(keyed, args['key-url'], 'keyed page');
    await p.waitForSelector('#auth:not([hidden])', { timeout: 30000 });
    assert((await p.$$eval('#model option', (os) => os.length)) === 0, 'models listed without a key');
    await shot(p, '06-needs-key');
    await p.type('#api-key', 'wrong-key');
    await p.click('#use-key');
    await p.waitForFunction(() => /was refused/.test(document.getElementById('auth-message').textContent),
      { timeout: 30000 });
    await p.type('#api-key', args.key);
    await p.click('#use-key');
    await p.waitForSelector('#auth[hidden]', { timeout: 30000 });
    const models = await p.$$eval('#model option', (os) => os.map((o) => o.value));
    assert(models.includes(MODEL), 'models with the key: ' + JSON.stringify(models));
    await p.click('#toggle-settings');
    await setField(p, 'max-tokens', 8);
    await sendMessage(p, 'Hello with a key');
    await p.waitForFunction(() => document.querySelectorAll('#messages .msg.assistant').length === 1);
    await waitIdle(p);
    const answer = await lastAnswer(p);
    assert(answer.text.length > 0 && answer.error === '', 'answer with the key: ' + JSON.stringify(answer));
    await shot(p, '07-with-key');
    await keyed.close();
  });

  await check('no console errors, CSP violations or uncaught exceptions', async () => {
    // The 401 and 429 answers the checks above provoke are logged by Chromium as failed loads.
    const unexpected = problems.filter((p) => !/status of (401|429|400)/.test(p));
    assert(unexpected.length === 0, unexpected.join('\n'));
  });
} finally {
  await browser.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}

console.log(failures === 0 ? 'all checks passed' : `${failures} check(s) failed`);
process.exit(failures === 0 ? 0 : 1);
