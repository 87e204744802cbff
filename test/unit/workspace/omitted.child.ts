// Packs the folder given as argv[2] and prints its omitted files as JSON. The unreadable-file
// test runs it as an unprivileged user when the tests run as root, who can read any file.
import { loadTokenizer } from '../../../src/engine/model/tokenizer';
import { packWorkspace } from '../../../src/workspace';

const root = process.argv[2];
loadTokenizer()
  .then((tokenizer) => packWorkspace({ roots: [root], tokenizer }))
  .then((r) => process.stdout.write(JSON.stringify({ omitted: r.manifest.omitted, files: r.manifest.files.map((f) => f.path) })));
