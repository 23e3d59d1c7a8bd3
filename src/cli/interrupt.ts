/**
 * Ctrl-C (SIGINT) and SIGTERM for long commands: the first one asks the work to stop cleanly, a
 * second one quits. SIGTERM is what `timeout`, `docker stop` and job schedulers (Slurm, at a job's
 * time limit) send before they kill: a run they stop is saved and resumable as after Ctrl-C.
 */
import { constants } from 'os';

const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Runs `body` with SIGINT and SIGTERM turned into an AbortSignal (its reason is the signal's
 * name); `stopping` is printed on the first one. A second one quits at once.
 */
export async function withStopSignals(stopping: string, body: (signal: AbortSignal) => Promise<number>): Promise<void> {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      // Die by the signal itself: process.exit would run LibTorch's static destructors while the
      // engine thread may still be inside a step.
      for (const s of STOP_SIGNALS) process.off(s, onSignal);
      process.kill(process.pid, name);
      return;
    }
    process.stderr.write(`\n${name === 'SIGINT' ? '' : `${name}: `}${stopping}\n`);
    controller.abort(name);
  };
  for (const s of STOP_SIGNALS) process.on(s, onSignal);
  try {
    const code = await body(controller.signal);
    if (code !== 0) process.exitCode = code;
  } finally {
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
  }
}

/** The exit status of a command stopped by `signal`'s signal, as a shell reports it: 130 after Ctrl-C, 143 after SIGTERM. */
export function stoppedExitCode(signal: AbortSignal): number {
  const name = typeof signal.reason === 'string' ? (signal.reason as NodeJS.Signals) : 'SIGINT';
  return 128 + (constants.signals[name] ?? constants.signals.SIGINT);
}
