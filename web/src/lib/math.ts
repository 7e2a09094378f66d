// math.ts - loaded on demand: KaTeX and its stylesheet.
import katex from 'katex';
import 'katex/dist/katex.min.css';

export function typeset(el: HTMLElement, tex: string, display: boolean): void {
  try {
    katex.render(tex, el, { displayMode: display, throwOnError: false, trust: false, strict: 'ignore', output: 'htmlAndMathml', maxExpand: 1000, maxSize: 50 });
  } catch {
    el.textContent = tex;
  }
}
