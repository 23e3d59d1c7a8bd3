/** Ctrl-C for long commands: the first one asks the work to stop cleanly, a second one quits. */

/**
 * Runs `body` with Ctrl-C turned into an AbortSignal; `stopping` is printed on the first one.
 * A second Ctrl-C quits at once.
 */
export async function withSigint(stopping: string, body: (signal: AbortSignal) => Promise<number>): Promise<void> {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) {
      // Die by the signal itself: process.exit would run LibTorch's static destructors while the
      // engine thread may still be inside a step.
      process.off('SIGINT', onSigint);
      process.kill(process.pid, 'SIGINT');
      return;
    }
    process.stderr.write(`\n${stopping}\n`);
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    const code = await body(controller.signal);
    if (code !== 0) process.exitCode = code;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
