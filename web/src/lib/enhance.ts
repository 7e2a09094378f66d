// enhance.ts - after sanitized markdown is in the DOM: syntax highlighting and
// math typesetting, each loaded the first time it is needed.

let highlightMod: Promise<typeof import('./highlight')> | null = null;
let mathMod: Promise<typeof import('./math')> | null = null;

/** Highlight code blocks and typeset math found under the given nodes (finished blocks only). */
export function enhance(nodes: Iterable<Node>): void {
  for (const n of nodes) {
    if (!(n instanceof HTMLElement)) continue;
    const codes = n.matches('code[data-lang]') ? [n] : Array.from(n.querySelectorAll<HTMLElement>('code[data-lang]'));
    for (const code of codes) {
      const lang = code.dataset.lang;
      if (!lang || code.dataset.hl) continue;
      code.dataset.hl = '1';
      highlightMod ??= import('./highlight');
      void highlightMod.then(async (m) => {
        const html = await m.highlight(code.textContent ?? '', lang);
        if (html !== null) {
          code.innerHTML = html;
          code.classList.add('hljs');
        }
      });
    }
    const maths = n.matches('.math') ? [n] : Array.from(n.querySelectorAll<HTMLElement>('.math'));
    for (const el of maths) {
      if (el.dataset.typeset) continue;
      el.dataset.typeset = '1';
      const tex = el.textContent ?? '';
      mathMod ??= import('./math');
      void mathMod.then((m) => m.typeset(el, tex, el.dataset.display === '1'));
    }
  }
}
