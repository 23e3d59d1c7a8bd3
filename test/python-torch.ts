/**
 * The Python with PyTorch + torchvision that some tests compare against (Debian's, by default):
 * those tests skip, saying why and how to install it, when it is missing.
 */
import { spawnSync } from 'child_process';

export const TORCH_PYTHON = process.env.MELANOMA_TORCH_PYTHON ?? '/usr/bin/python3';

const probe = spawnSync(TORCH_PYTHON, ['-c', 'import torch, torchvision'], { encoding: 'utf8' });

/** Whether TORCH_PYTHON can import torch and torchvision. */
export const hasTorch = probe.status === 0;

/** Warns that `what` is skipped when there is no torch (call at module level); returns hasTorch. */
export function requireTorchOrWarn(what: string, note = ''): boolean {
  if (!hasTorch) {
    const why = probe.error ? `${TORCH_PYTHON} not found` : (probe.stderr || '').trim().split('\n').pop();
    console.warn(
      `Skipping ${what}: ${TORCH_PYTHON} cannot import torch and torchvision (${why}). ` +
        `Install them with: apt-get install -y python3-torch python3-torchvision${note ? ` ${note}` : ''}`,
    );
  }
  return hasTorch;
}
