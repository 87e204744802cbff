/**
 * `klc`: the headless face of the engine. Each subcommand lives in src/cli/<name>.ts and exports
 * `run(argv)`; this file only dispatches and turns errors into one line and an exit code.
 */
import { removeUnfinishedWrites } from './common/atomic';
import { isUserError } from './common/errors';

type Command = {
  summary: string;
  load: () => Promise<{ run(argv: string[]): Promise<void> }>;
  /** The command stops itself on Ctrl-C (a server shutting down in order) instead of being stopped. */
  ownInterrupt?: true;
};

const commands: Record<string, Command> = {
  pack: { summary: 'pack workspace folders into one context and print what was packed', load: () => import('./cli/pack') },
  tokenize: { summary: 'tokenize a file with a model\'s tokenizer', load: () => import('./cli/tokenize') },
  ingest: { summary: 'pack and prefill a workspace, and save its state', load: () => import('./cli/ingest') },
  ask: { summary: 'answer a question from the saved workspace state', load: () => import('./cli/ask') },
  bench: { summary: 'measure ingest, decode, cached time to first token and incremental re-ingest', load: () => import('./cli/bench') },
  plan: { summary: 'the GPU memory a model needs for a context and whether it fits, without a GPU', load: () => import('./cli/plan') },
  serve: { summary: 'serve the model and workspaces over an OpenAI-compatible HTTP API', load: () => import('./cli/serve'), ownInterrupt: true },
  quantize: { summary: 'write a quantized (compressed-tensors) copy of a checkpoint', load: () => import('./cli/quantize') },
  accuracy: { summary: 'KL divergence and top-1 agreement of each quantization at load against the unquantized model', load: () => import('./cli/accuracy') },
  forward: { summary: 'logits for token ids (test contract; --split checks state save/restore)', load: () => import('./cli/forward') },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: klc <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'klc <command> --help' for a command's options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`klc: unknown command '${name}'. Run 'klc --help' for the list.\n`);
    return 2;
  }
  // Ctrl-C stops any command at once: writes under way are dropped (the files they were to
  // replace stay whole) and the exit code says it was an interrupt.
  if (!command.ownInterrupt) {
    process.once('SIGINT', () => {
      removeUnfinishedWrites();
      process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}klc ${name}: interrupted\n`);
      process.exit(130);
    });
  }
  try {
    await (await command.load()).run(rest);
    return 0;
  } catch (e) {
    if (isUserError(e)) {
      process.stderr.write(`klc ${name}: ${e.message}\n`);
      return 1;
    }
    process.stderr.write(`klc ${name}: internal error (please report it): ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    return 70;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
