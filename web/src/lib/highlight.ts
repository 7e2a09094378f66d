// highlight.ts - loaded on demand: highlight.js core, and each language only
// when a code block asks for it.

import hljs from 'highlight.js/lib/core';

type Loader = () => Promise<{ default: Parameters<typeof hljs.registerLanguage>[1] }>;

const LOADERS: Record<string, Loader> = {
  bash: () => import('highlight.js/lib/languages/bash'),
  c: () => import('highlight.js/lib/languages/c'),
  cpp: () => import('highlight.js/lib/languages/cpp'),
  csharp: () => import('highlight.js/lib/languages/csharp'),
  css: () => import('highlight.js/lib/languages/css'),
  diff: () => import('highlight.js/lib/languages/diff'),
  dockerfile: () => import('highlight.js/lib/languages/dockerfile'),
  go: () => import('highlight.js/lib/languages/go'),
  graphql: () => import('highlight.js/lib/languages/graphql'),
  ini: () => import('highlight.js/lib/languages/ini'),
  java: () => import('highlight.js/lib/languages/java'),
  javascript: () => import('highlight.js/lib/languages/javascript'),
  json: () => import('highlight.js/lib/languages/json'),
  kotlin: () => import('highlight.js/lib/languages/kotlin'),
  latex: () => import('highlight.js/lib/languages/latex'),
  lua: () => import('highlight.js/lib/languages/lua'),
  makefile: () => import('highlight.js/lib/languages/makefile'),
  markdown: () => import('highlight.js/lib/languages/markdown'),
  nginx: () => import('highlight.js/lib/languages/nginx'),
  php: () => import('highlight.js/lib/languages/php'),
  plaintext: () => import('highlight.js/lib/languages/plaintext'),
  powershell: () => import('highlight.js/lib/languages/powershell'),
  python: () => import('highlight.js/lib/languages/python'),
  r: () => import('highlight.js/lib/languages/r'),
  ruby: () => import('highlight.js/lib/languages/ruby'),
  rust: () => import('highlight.js/lib/languages/rust'),
  scala: () => import('highlight.js/lib/languages/scala'),
  scss: () => import('highlight.js/lib/languages/scss'),
  shell: () => import('highlight.js/lib/languages/shell'),
  sql: () => import('highlight.js/lib/languages/sql'),
  swift: () => import('highlight.js/lib/languages/swift'),
  typescript: () => import('highlight.js/lib/languages/typescript'),
  xml: () => import('highlight.js/lib/languages/xml'),
  yaml: () => import('highlight.js/lib/languages/yaml'),
};

const ALIASES: Record<string, string> = {
  sh: 'bash', zsh: 'bash', console: 'shell', 'c++': 'cpp', cc: 'cpp', h: 'c', hpp: 'cpp', cs: 'csharp', 'c#': 'csharp',
  docker: 'dockerfile', golang: 'go', js: 'javascript', jsx: 'javascript', mjs: 'javascript', cjs: 'javascript',
  ts: 'typescript', tsx: 'typescript', py: 'python', python3: 'python', rb: 'ruby', rs: 'rust', kt: 'kotlin',
  yml: 'yaml', html: 'xml', svg: 'xml', xhtml: 'xml', vue: 'xml', md: 'markdown', tex: 'latex', toml: 'ini',
  ps: 'powershell', ps1: 'powershell', text: 'plaintext', txt: 'plaintext', make: 'makefile', jsonc: 'json',
  postgres: 'sql', postgresql: 'sql', mysql: 'sql', sqlite: 'sql', gql: 'graphql',
};

const loading = new Map<string, Promise<boolean>>();

export function canonical(lang: string): string | null {
  const l = lang.toLowerCase();
  const name = ALIASES[l] ?? l;
  return LOADERS[name] ? name : null;
}

function ensure(name: string): Promise<boolean> {
  let p = loading.get(name);
  if (!p) {
    p = LOADERS[name]!()
      .then((m) => {
        hljs.registerLanguage(name, m.default);
        return true;
      })
      .catch(() => false);
    loading.set(name, p);
  }
  return p;
}

const cache = new Map<string, string>();

/** Highlighted HTML for code (hljs escapes the text), or null for unknown languages. */
export async function highlight(code: string, lang: string): Promise<string | null> {
  const name = canonical(lang);
  if (!name || !(await ensure(name))) return null;
  const key = `${name}\u0000${code}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const html = hljs.highlight(code, { language: name, ignoreIllegals: true }).value;
  if (cache.size > 500) cache.delete(cache.keys().next().value!);
  cache.set(key, html);
  return html;
}
