/**
 * Markdown → HTML for chat entries: markdown-it with raw HTML off, fenced code highlighted by
 * highlight.js, and file references turned into links once the host has confirmed the file exists.
 * The result still goes through sanitizeHtml before it reaches the DOM.
 */
import MarkdownIt from 'markdown-it';
import type { Env, StateCore, Token } from 'markdown-it';
import hljs from 'highlight.js/lib/common';
import { findFileRefs, parseFileRef, type FileRef } from './file-refs';

/** What the renderer knows about a candidate path: true = a file, false = not, undefined = not asked yet. */
export type PathLookup = (path: string) => boolean | undefined;

export interface Rendered {
  html: string;
  /** Candidate paths the lookup did not know; ask the host, then render again. */
  unresolved: string[];
}

interface LinkEnv extends Env {
  lookup: PathLookup;
  unresolved: Set<string>;
}

function known(env: LinkEnv, path: string): boolean {
  const answer = env.lookup(path);
  if (answer === undefined) env.unresolved.add(path);
  return answer === true;
}

function linkOpen(state: StateCore, ref: FileRef): Token {
  const t = new state.Token('link_open', 'a', 1);
  t.attrs = [['href', '#'], ['class', 'file-link'], ['data-path', ref.path]];
  if (ref.line !== undefined) t.attrs.push(['data-line', String(ref.line)]);
  if (ref.endLine !== undefined) t.attrs.push(['data-end-line', String(ref.endLine)]);
  if (ref.column !== undefined) t.attrs.push(['data-column', String(ref.column)]);
  t.attrs.push(['title', `Open ${ref.path}${ref.line !== undefined ? ` at line ${ref.line}` : ''}`]);
  return t;
}

function textToken(state: StateCore, content: string): Token {
  const t = new state.Token('text', '', 0);
  t.content = content;
  return t;
}

/** Splits text tokens around known file references and wraps them (and whole-path inline code) in links. */
function linkFileRefs(tokens: Token[], state: StateCore, env: LinkEnv): Token[] {
  const out: Token[] = [];
  let linkDepth = 0;
  for (const tok of tokens) {
    if (tok.type === 'link_open') linkDepth++;
    if (tok.type === 'link_close') linkDepth--;
    if (linkDepth > 0 || (tok.type !== 'text' && tok.type !== 'code_inline')) {
      out.push(tok);
      continue;
    }
    if (tok.type === 'code_inline') {
      const ref = parseFileRef(tok.content);
      if (ref && known(env, ref.path)) out.push(linkOpen(state, ref), tok, new state.Token('link_close', 'a', -1));
      else out.push(tok);
      continue;
    }
    let at = 0;
    for (const ref of findFileRefs(tok.content)) {
      if (!known(env, ref.path)) continue;
      if (ref.start > at) out.push(textToken(state, tok.content.slice(at, ref.start)));
      out.push(linkOpen(state, ref), textToken(state, tok.content.slice(ref.start, ref.end)), new state.Token('link_close', 'a', -1));
      at = ref.end;
    }
    if (at === 0) out.push(tok);
    else if (at < tok.content.length) out.push(textToken(state, tok.content.slice(at)));
  }
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURI(s);
  } catch {
    return s;
  }
}

/** Markdown links: web links stay, links to workspace files become file links, anything else loses its link. */
function retargetLinks(tokens: Token[], env: LinkEnv): void {
  for (const tok of tokens) {
    if (tok.type === 'link_open' && !tok.attrGet('data-path')) {
      const href = String(tok.attrGet('href') ?? '');
      if (/^https?:\/\//i.test(href)) {
        tok.attrSet('class', 'external-link');
        tok.attrSet('title', href);
        continue;
      }
      const ref = parseFileRef(safeDecode(href.replace(/^\.\//, '')));
      if (ref && known(env, ref.path)) {
        tok.attrs = [['href', '#'], ['class', 'file-link'], ['data-path', ref.path]];
        if (ref.line !== undefined) tok.attrs.push(['data-line', String(ref.line)]);
        if (ref.endLine !== undefined) tok.attrs.push(['data-end-line', String(ref.endLine)]);
      } else {
        tok.attrs = [['class', 'dead-link']];
      }
    }
  }
}

export function createMarkdown(): (text: string, lookup: PathLookup) => Rendered {
  const md = new MarkdownIt({
    html: false,
    linkify: false,
    typographer: false,
    breaks: false,
    langPrefix: 'hljs language-',
    highlight: (code, lang) => {
      const language = lang.trim().split(/\s+/)[0]?.toLowerCase() ?? '';
      if (language === '' || !hljs.getLanguage(language)) return '';
      return hljs.highlight(code, { language, ignoreIllegals: true }).value;
    },
  });
  // An image would be a remote fetch (blocked by the CSP anyway); show its link instead.
  md.disable('image');
  md.core.ruler.push('klc_file_links', (state) => {
    const env = state.env as unknown as LinkEnv;
    for (const block of state.tokens) {
      if (block.type !== 'inline' || !block.children) continue;
      retargetLinks(block.children, env);
      block.children = linkFileRefs(block.children, state, env);
    }
  });
  return (text, lookup) => {
    const env: LinkEnv = { lookup, unresolved: new Set() };
    const html = md.render(text, env);
    return { html, unresolved: [...env.unresolved] };
  };
}
