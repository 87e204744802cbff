import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..', '..');

/** Real source files in several languages, from packages pinned by package-lock.json. */
export const SOURCE_FILES = [
  'node_modules/typescript/lib/lib.es5.d.ts',
  'node_modules/markdown-it/README.md',
  'node_modules/flatted/python/flatted.py',
  'node_modules/flatted/golang/pkg/flatted/flatted.go',
  'node_modules/uglify-js/tools/domprops.html',
  'node_modules/jschardet/scripts/run-workflow.sh',
  'node_modules/reusify/.github/workflows/ci.yml',
  'node_modules/highlight.js/styles/github-dark.css',
  'node_modules/typescript/package.json',
  'node_modules/highlight.js/lib/languages/rust.js',
].map((path) => ({ path, text: readFileSync(join(ROOT, path), 'utf8') }));

/** Inputs where a regex port or a byte-level detail is most likely to go wrong. */
export const TRICKY_TEXTS: Record<string, string> = {
  latin1: 'Ça va? Naïve café, Über größer, ÅNGSTRÖM señor Ærø façade',
  cjk: '中文分词测试：汉字和かな混合、カタカナ、한국어 텍스트 and 中English混合文本。',
  cyrillic: 'Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.',
  greekArabicHebrew: 'Ελληνικά κείμενα — العربية نص — עברית טקסט',
  emoji: 'emoji 🎉🚀 family 👨‍👩‍👧‍👦 flag 🇯🇵 skin 👍🏽 keycap 1️⃣ zwj 🏳️‍🌈 end',
  whitespace: `a${' '.repeat(300)}b\t\t\t\t\t\t\n\n\n\n${' '.repeat(37)}\n  \u00a0\u2003\u3000x   \n`,
  crlf: 'line one\r\nline two\r\n\r\n\tindented\r\n  // comment\r\nend\r',
  contractions: "it's IT'S we'RE you've I'm they'll he'd it'ſ don'T O'Neil 'quoted'",
  marks: 'e\u0301 a\u0308 n\u0303 Z\u0335\u0321a\u0336l\u0337g\u0338o ก่อน हिन्दी',
  unicodeSpaces: '\ufeffBOM at start\u0085next-line\u2028line-sep\u2029para-sep\u000bvt\u000cff',
  digits: '1234567890 3.14159 1e10 0xDEADbeef ١٢٣٤ ⅓ ²³ 12,345,678',
  specials: 'x<|im_end|>y [BOS] <|im_user|>user<|im_middle|>hi<|im_end|><|reserved_token_3845|> [PAD]',
  punctuation: '==== ---- **** #### //// ;;;; !!!??? ... ,,, ~~~ <<< >>> |||',
  c: '/* naïve 内存 */\n#include <stdio.h>\nint main(void) { printf("héllo\\n"); return 0; }\n',
  rust: 'fn main() {\n    let s: &str = "ünïcödé";\n    println!("{s:?} → {}", s.len());\n}\n',
  lone: 'unpaired surrogates are replaced by UTF-8 encoding: \ud800 and \udfff',
};
