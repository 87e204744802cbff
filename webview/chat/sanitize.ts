/**
 * The one gate between text (model answers, file contents, questions) and the webview's DOM:
 * markdown is rendered to HTML, then sanitized here, then inserted. The policy allows only what
 * our markdown renderer produces, so anything else that slips into the HTML is dropped.
 */
import type { Config, DOMPurify } from 'dompurify';

export const PURIFY_CONFIG: Config = {
  ALLOWED_TAGS: [
    'p', 'br', 'hr', 'em', 'strong', 's', 'code', 'pre', 'span', 'a', 'blockquote',
    'ul', 'ol', 'li', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
    'table', 'thead', 'tbody', 'tr', 'th', 'td',
  ],
  // No style: the webview's CSP forbids inline styles anyway (table alignment is lost, on purpose).
  ALLOWED_ATTR: ['class', 'href', 'title', 'start'],
  // Links may only be web addresses or in-page anchors; file links carry their target in data-*.
  ALLOWED_URI_REGEXP: /^(?:https?:\/\/|#)/i,
  // File links keep their target in data-path/-line; the host checks every path it is asked to open.
  ALLOW_DATA_ATTR: true,
  ALLOW_ARIA_ATTR: false,
};

export function sanitizeHtml(purify: DOMPurify, html: string): string {
  return purify.sanitize(html, { ...PURIFY_CONFIG, RETURN_DOM: false, RETURN_DOM_FRAGMENT: false }) as string;
}
