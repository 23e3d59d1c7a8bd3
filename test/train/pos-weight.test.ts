/**
 * posWeight 'auto' comes from the training set even when the engine was first built without one
 * (scoring a baseline before fit): the placeholder weight 1 must not leak into training.
 */
import { Trainer, balancedPosWeight } from '../../src/train/trainer';
import { TINY_TRAINER, tempDir, tinyDemo } from './helpers';

const root = tempDir();

test('evaluate before fit, then fit: the class weight is the training set\'s', async () => {
  const { samples } = await tinyDemo(root);
  const train = samples.slice(0, 24);
  const valid = samples.slice(24);
  const trainer = new Trainer({ ...TINY_TRAINER, epochs: 1 });
  try {
    await trainer.evaluate(valid); // builds the engine before any training set is known
    expect(trainer.positiveWeight).toBe(1);
    await trainer.fit({ train, valid });
    expect(trainer.positiveWeight).toBe(balancedPosWeight(train));
    expect(trainer.positiveWeight).not.toBe(1);
  } finally {
    await trainer.dispose();
  }
});
