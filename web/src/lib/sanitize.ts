// sanitize.ts - model output is untrusted. Everything the markdown renderer
// makes goes through DOMPurify with a strict allow-list, and links are fixed
// up: only http(s)/mailto/relative targets survive, and they open in a new tab
// without opener or referrer.

import DOMPurify from 'dompurify';

const SAFE_HREF = /^(?:https?:|mailto:|#|\/(?!\/))/i;

const ALLOWED_TAGS = [
  'a', 'b', 'blockquote', 'br', 'button', 'code', 'del', 'div', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
  'hr', 'i', 'input', 'kbd', 'li', 'ol', 'p', 'pre', 's', 'span', 'strong', 'sub', 'sup', 'table', 'tbody',
  'td', 'tfoot', 'th', 'thead', 'tr', 'ul',
];
const ALLOWED_ATTR = ['href', 'title', 'class', 'type', 'checked', 'disabled', 'align', 'start', 'data-lang', 'data-display', 'aria-label', 'colspan', 'rowspan'];

let hooked = false;
function setup(): void {
  if (hooked) return;
  hooked = true;
  // Once, not per call: DOMPurify.sanitize(html, cfg) parses cfg again each
  // time (allow-lists rebuilt from the defaults and the arrays here), a cost
  // paid by every block rendered, the first screen of a chat included.
  DOMPurify.setConfig({
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    ADD_ATTR: ['target', 'rel'],
    FORBID_TAGS: ['style', 'script', 'iframe', 'object', 'embed', 'form', 'svg', 'math', 'img'],
  });
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    const el = node as Element;
    if (el.tagName === 'A') {
      const href = el.getAttribute('href');
      if (href !== null && !SAFE_HREF.test(href.trim())) el.removeAttribute('href');
      if (el.hasAttribute('href')) {
        el.setAttribute('target', '_blank');
        el.setAttribute('rel', 'noopener noreferrer');
      }
    } else if (el.tagName === 'INPUT') {
      // Only the disabled task-list checkboxes the renderer makes.
      if (el.getAttribute('type') !== 'checkbox') el.remove();
      else el.setAttribute('disabled', '');
    } else if (el.tagName === 'BUTTON') {
      el.setAttribute('type', 'button');
    }
  });
}

/** Sanitize an HTML string made from untrusted markdown. */
export function sanitizeHtml(html: string): string {
  // Fail closed: without a working DOMPurify, show text, never markup.
  if (!DOMPurify.isSupported) return html.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  setup();
  return DOMPurify.sanitize(html);
}
