/**
 * Entry of the engine process (bundled to dist/engine-host.js). The extension spawns it with the
 * editor's Node (ELECTRON_RUN_AS_NODE=1), the CLI with plain node. It speaks JSON-RPC on
 * stdin/stdout; everything else, logs included, goes to stderr, because one stray byte on stdout
 * would corrupt the protocol stream.
 *
 * `engine-host.js --inspect-model DIR [--budget JSON]` instead prints one JSON ModelInspection (the
 * folder check, the GPUs, the memory plan for that MemoryBudget) and exits: "Select Model Folder…"
 * runs it before anything loads.
 */
import { Writable } from 'node:stream';
import { format } from 'node:util';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import type { MemoryBudget } from '../plan/memory-plan';
import { inspectModel } from './inspect-model';
import { serveEngine } from './serve';

const writeStdout = process.stdout.write.bind(process.stdout) as (chunk: Uint8Array | string, cb: (err?: Error | null) => void) => boolean;
const protocolOut = new Writable({
  write(chunk: Uint8Array, _encoding, callback) {
    writeStdout(chunk, callback);
  },
});
// Any other writer to stdout (a library's console.log) is sent to stderr instead.
process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
const toStderr = (...args: unknown[]) => void process.stderr.write(`${format(...args)}\n`);
console.log = toStderr;
console.info = toStderr;
console.debug = toStderr;

const inspect = process.argv.indexOf('--inspect-model');
if (inspect >= 0) {
  const budget = process.argv.indexOf('--budget');
  void inspectModel(process.argv[inspect + 1] ?? '', budget >= 0 ? (JSON.parse(process.argv[budget + 1] ?? '{}') as MemoryBudget) : {}).then(
    (report) => writeStdout(`${JSON.stringify(report)}\n`, () => process.exit(0)),
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
} else {
  const connection = createMessageConnection(new StreamMessageReader(process.stdin), new StreamMessageWriter(protocolOut));
  serveEngine(connection, {
    log: (line) => void process.stderr.write(`${line}\n`),
    exit: () => process.exit(0),
  });
  connection.listen();
}
