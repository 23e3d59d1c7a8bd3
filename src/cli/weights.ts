/**
 * `weights import FILE`: a lukemelas / torchvision / timm EfficientNet state dict (.pth, .pt,
 * .safetensors) -> weights/<name>.safetensors (engine names, F32) + weights/<name>.json.
 * src/cli.ts registers it with registerWeightsCommand(program).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { MODEL_NAMES, ModelName } from '../model/architectures';
import { importWeights } from '../model/weights/import';
import { LAYOUTS, Layout } from '../model/weights/layouts';
import { DEFAULT_WEIGHTS_DIR, listImportedWeights } from '../model/weights/store';

interface ImportCommandOptions {
  format: 'auto' | Layout;
  name?: string;
  model?: ModelName;
  widthFactor?: number;
  padding?: 'same' | 'symmetric';
  weightsDir: string;
  force?: boolean;
  json?: boolean;
}

function positiveNumber(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} expects a positive number but received '${value}'`);
    return n;
  };
}

export function registerWeightsCommand(program: Command): void {
  const weights = program.command('weights').description('pretrained ImageNet weights: import lukemelas, torchvision and timm files for fine-tuning (see weights/README.md)');
  weights
    .command('import')
    .description(
      'read a .pth/.pt (torch.save) or .safetensors EfficientNet state dict, map it to the engine, check every shape, and write ' +
        'weights/<name>.safetensors + weights/<name>.json; then train with --pretrained <name>',
    )
    .argument('<file>', 'e.g. efficientnet-b0-355c32eb.pth (lukemelas), efficientnet_b0_rwightman-7f5810bc.pth (torchvision), model.safetensors (timm)')
    .addOption(new Option('--format <layout>', 'key layout of the file').choices(['auto', ...LAYOUTS]).default('auto'))
    .option('--name <name>', 'output name (default <model>-<layout>, e.g. efficientnet-b0-lukemelas)')
    .addOption(new Option('--model <name>', 'the architecture you expect; the file must hold it (default: whatever it holds)').choices([...MODEL_NAMES]))
    .option('--width-factor <x>', 'width factor of the file\'s model (default: detected among 1, 0.5, 0.25)', positiveNumber('--width-factor'))
    .addOption(
      new Option('--padding <style>', "padding the weights were trained with (default: 'same' for lukemelas and timm tf_* files, else 'symmetric')").choices([
        'same',
        'symmetric',
      ]),
    )
    .option('--weights-dir <dir>', 'where imported weights are written', DEFAULT_WEIGHTS_DIR)
    .option('--force', 'replace an earlier import of the same name')
    .option('--json', 'print the sidecar JSON instead of a summary')
    .action(async (file: string, opts: ImportCommandOptions) => {
      const result = await importWeights(file, {
        format: opts.format,
        name: opts.name,
        model: opts.model,
        widthFactor: opts.widthFactor,
        padding: opts.padding,
        weightsDir: opts.weightsDir,
        force: opts.force,
      });
      const info = result.info;
      if (opts.json) {
        console.log(JSON.stringify({ file: result.file, sidecar: result.sidecar, ...info }, null, 2));
        return;
      }
      console.log(
        `imported ${file} (${info.layout} layout, ${info.container === 'legacy' ? 'legacy torch.save' : info.container === 'zip' ? 'torch.save zip' : 'safetensors'}) ` +
          `as ${info.model}${info.widthFactor !== 1 ? ` x${info.widthFactor} width` : ''}: ${info.tensors} tensors`,
      );
      console.log(`architecture: ${info.padding} padding, BatchNorm eps ${info.bnEps} / momentum ${info.bnMomentum} (${info.architectureReason})`);
      for (const note of info.notes) console.log(`note: ${note}`);
      console.log(`wrote ${result.file} and ${result.sidecar} (source sha256 ${info.sourceSha256.slice(0, 16)}...)`);
      // A name resolves in ./weights only; elsewhere the path is what --pretrained takes.
      console.log(`fine-tune: melanoma train --pretrained ${opts.weightsDir === DEFAULT_WEIGHTS_DIR ? info.name : result.file}`);
    });
  weights
    .command('list')
    .description('names of the imported weights')
    .option('--weights-dir <dir>', 'folder of imported weights', DEFAULT_WEIGHTS_DIR)
    .action((opts: { weightsDir: string }) => {
      const names = listImportedWeights(opts.weightsDir);
      if (!names.length) console.log(`nothing imported in ${opts.weightsDir}/ (melanoma weights import FILE)`);
      for (const name of names) console.log(name);
    });
}
