import { join } from 'node:path';
import { packageRoot } from '../../../common/package-root';

/** The folder of the bundled tokenizer (assets/tokenizer in the package). */
export function bundledTokenizerDir(): string {
  return join(packageRoot(), 'assets', 'tokenizer');
}
