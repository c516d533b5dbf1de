// A small Markdown renderer for model answers that builds DOM nodes and sets only text
// (createTextNode / textContent), never markup: whatever the model writes, "<script>" included,
// shows as the characters it is. What it knows: fenced code blocks (an unclosed fence, as in a
// stream still running, runs to the end), headings, bullet and numbered lists, block quotes,
// paragraphs, and inline `code`, **bold**, *italic* and [links](https://...) (http and https
// only). Everything else is plain text.

const FENCE = /^\s{0,3}(```|~~~)\s*([\w+#.-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^\s{0,3}(\d{1,9})[.)]\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?(.*)$/;
// Inline: code span, bold, italic, link. The first match in the text wins. __bold__ only between
// word boundaries, so that snake_case and __names__ inside words stay as written.
const INLINE =
  /`([^`\n]+)`|\*\*([^*\n]+?)\*\*|(?<!\w)__([^_\n]+?)__(?!\w)|\*([^*\s][^*\n]*?)\*|\[([^\]\n]+)\]\(([^)\s]+)\)/;

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

// Appends `text` to `parent` with inline formatting.
export function appendInline(parent, text) {
  let rest = text;
  while (rest.length > 0) {
    const m = INLINE.exec(rest);
    if (!m) {
      parent.appendChild(document.createTextNode(rest));
      return;
    }
    if (m.index > 0) parent.appendChild(document.createTextNode(rest.slice(0, m.index)));
    if (m[1] !== undefined) {
      const code = el('code');
      code.textContent = m[1];
      parent.appendChild(code);
    } else if (m[2] !== undefined || m[3] !== undefined) {
      const strong = el('strong');
      appendInline(strong, m[2] ?? m[3]);
      parent.appendChild(strong);
    } else if (m[4] !== undefined) {
      const em = el('em');
      appendInline(em, m[4]);
      parent.appendChild(em);
    } else {
      parent.appendChild(link(m[5], m[6]) ?? document.createTextNode(m[0]));
    }
    rest = rest.slice(m.index + m[0].length);
  }
}

// An <a> for an absolute http(s) URL, or null (javascript:, data: and relative URLs stay text).
function link(label, href) {
  let url;
  try {
    url = new URL(href);
  } catch {
    return null;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
  const a = el('a');
  a.href = url.href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  a.textContent = label;
  return a;
}

// Replaces the children of `container` with `markdown` rendered.
export function renderMarkdown(container, markdown) {
  container.replaceChildren();
  const lines = markdown.replace(/\r\n?/g, '\n').split('\n');
  let paragraph = [];
  let list = null;  // the open <ul>/<ol>
  let quote = null; // the open <blockquote>'s lines

  const flushParagraph = () => {
    if (paragraph.length === 0) return;
    const p = el('p');
    appendInline(p, paragraph.join('\n'));
    container.appendChild(p);
    paragraph = [];
  };
  const flushQuote = () => {
    if (quote === null) return;
    const q = el('blockquote');
    renderMarkdown(q, quote.join('\n'));
    container.appendChild(q);
    quote = null;
  };
  const flushAll = () => {
    flushParagraph();
    flushQuote();
    list = null;
  };

  for (let i = 0; i < lines.length; ++i) {
    const line = lines[i];
    let m;
    if ((m = FENCE.exec(line))) {
      flushAll();
      const fence = m[1];
      const code = [];
      for (++i; i < lines.length && !lines[i].trim().startsWith(fence); ++i) code.push(lines[i]);
      const pre = el('pre');
      const c = el('code');
      if (m[2]) {
        c.dataset.lang = m[2];
        pre.dataset.lang = m[2];
      }
      c.textContent = code.join('\n');
      pre.appendChild(c);
      container.appendChild(pre);
      continue;
    }
    if ((m = QUOTE.exec(line))) {
      flushParagraph();
      list = null;
      (quote ??= []).push(m[1]);
      continue;
    }
    flushQuote();
    if (line.trim() === '') {
      flushParagraph();
      list = null;
    } else if ((m = HEADING.exec(line))) {
      flushAll();
      const h = el('h' + Math.min(6, m[1].length + 2));
      appendInline(h, m[2]);
      container.appendChild(h);
    } else if ((m = BULLET.exec(line)) || (m = NUMBERED.exec(line))) {
      flushParagraph();
      const tag = m.length === 2 ? 'ul' : 'ol';
      if (list === null || list.tagName.toLowerCase() !== tag) {
        list = el(tag);
        if (tag === 'ol' && m[1] !== '1') list.start = Number(m[1]);
        container.appendChild(list);
      }
      const li = el('li');
      appendInline(li, m[m.length - 1]);
      list.appendChild(li);
    } else if (list !== null && /^\s+\S/.test(line)) {
      // A continuation line of the last list item.
      appendInline(list.lastChild, '\n' + line.trim());
    } else {
      list = null;
      paragraph.push(line);
    }
  }
  flushAll();
}
