/**
 * A refusal about the user's data or files (a damaged JPEG, a results file that exists): one
 * `error:` line and exit code 2, without commander's "(run with --help for usage)" hint, which
 * is about command-line syntax and would only mislead here.
 */
import { Command, CommanderError } from 'commander';

export function refuse(command: Command, message: string): never {
  const write = command.configureOutput().writeErr ?? ((text: string) => process.stderr.write(text));
  write(`error: ${message}\n`);
  throw new CommanderError(2, 'melanoma.refused', message);
}
