/**
 * The importer's table of engine tensors (src/model/weights/layouts.ts) against what a real
 * engine exports, and the key maps of the three layouts.
 */
import { buildModelSpec, ModelName } from '../../src/model/architectures';
import { engineConfig, resolveOptions } from '../../src/model/config';
import { engineTensors, sourceModuleName } from '../../src/model/weights';
import { Engine } from '../../src/native';

test.each([
  ['efficientnet-b0', 1, 0],
  ['efficientnet-b2', 0.25, 0],
  ['efficientnet-b5', 0.25, 0],
  ['efficientnet-b0', 0.5, 64],
] as [ModelName, number, number][])('%s x%s (head hidden %s): the table matches the engine', async (model, widthFactor, headHidden) => {
  const options = resolveOptions({ model, widthFactor, headHidden, device: 'cpu', precision: 'fp32' }, { cudaAvailable: () => false });
  const engine = await Engine.create(engineConfig(options, 1));
  try {
    const exported = (await engine.exportState()).model.map((t) => `${t.name} ${t.dtype} [${t.shape}]`).sort();
    const table = engineTensors(buildModelSpec(model, { widthFactor, headHidden })).map((t) => `${t.name} ${t.dtype} [${t.shape}]`).sort();
    expect(table).toEqual(exported);
  } finally {
    await engine.dispose();
  }
});

test('key maps of the three layouts', () => {
  const spec = buildModelSpec('efficientnet-b0');
  const names = (layout: 'lukemelas' | 'torchvision' | 'timm', modules: string[]) => modules.map((m) => sourceModuleName(layout, m, spec));
  const modules = ['conv_stem', 'bn1', 'blocks.0.0.conv_dw', 'blocks.0.0.bn1', 'blocks.0.0.se.conv_reduce', 'blocks.0.0.conv_pw', 'blocks.0.0.bn2'];
  const expanding = ['blocks.2.1.conv_pw', 'blocks.2.1.bn1', 'blocks.2.1.conv_dw', 'blocks.2.1.bn2', 'blocks.2.1.se.conv_expand', 'blocks.2.1.conv_pwl', 'blocks.2.1.bn3'];
  const top = ['conv_head', 'bn2', 'classifier'];
  expect(names('lukemelas', [...modules, ...expanding, ...top])).toEqual([
    '_conv_stem', '_bn0', '_blocks.0._depthwise_conv', '_blocks.0._bn1', '_blocks.0._se_reduce', '_blocks.0._project_conv', '_blocks.0._bn2',
    // stage 2, block 1 is block 4 of the network (1 + 2 + 1)
    '_blocks.4._expand_conv', '_blocks.4._bn0', '_blocks.4._depthwise_conv', '_blocks.4._bn1', '_blocks.4._se_expand', '_blocks.4._project_conv', '_blocks.4._bn2',
    '_conv_head', '_bn1', '_fc',
  ]);
  expect(names('torchvision', [...modules, ...expanding, ...top])).toEqual([
    'features.0.0', 'features.0.1', 'features.1.0.block.0.0', 'features.1.0.block.0.1', 'features.1.0.block.1.fc1', 'features.1.0.block.2.0', 'features.1.0.block.2.1',
    'features.3.1.block.0.0', 'features.3.1.block.0.1', 'features.3.1.block.1.0', 'features.3.1.block.1.1', 'features.3.1.block.2.fc2', 'features.3.1.block.3.0', 'features.3.1.block.3.1',
    'features.8.0', 'features.8.1', 'classifier.1',
  ]);
  expect(names('timm', [...modules, ...expanding, ...top])).toEqual([...modules, ...expanding, ...top]);
  // b3 has 26 blocks: its last block is lukemelas' _blocks.25.
  const b3 = buildModelSpec('efficientnet-b3');
  expect(sourceModuleName('lukemelas', `blocks.6.${b3.stages[6].repeats - 1}.conv_pwl`, b3)).toBe('_blocks.25._project_conv');
});
