#!/usr/bin/python3
"""Reference state dicts and logits for the weights-import parity tests (test/weights/).

Run with Debian's /usr/bin/python3 and its python3-torch + python3-torchvision packages:

    /usr/bin/python3 test/weights/parity.py --out DIR [--fixtures]

It writes DIR/input.bin (uint8 images, N x H x W x 3, row-major: exactly what the engine's
evaluate() receives), one weights file per case and DIR/manifest.json with each case's layout,
architecture and the reference logits. What each case compares:

- torchvision: torchvision's own EfficientNet (efficientnet_b0 / _b3, or b0 at width 0.25 for the
  committed fixture) with random weights, random BatchNorm statistics and classifier[1] replaced by
  Linear(features, 1), in eval mode, on the same images normalised as the engine normalises them
  ((x / 255 - mean) / std in float32, ImageNet mean/std). Saved with torch.save (zip format).
- lukemelas (b0 and b3): lukemelas/efficientnet_pytorch is not installable here, so the SAME network is a
  torchvision EfficientNet changed to lukemelas' conventions: every Conv2d pads with TensorFlow
  SAME (asymmetric [p // 2, p - p // 2], through F.pad in a forward pre-hook, conv padding 0) and
  every BatchNorm has eps 1e-3 (momentum 0.01). Its state dict is renamed to lukemelas' keys
  (_conv_stem, _bn0, _blocks.{k}._expand_conv ..., _fc; see rename_lukemelas) without
  num_batches_tracked, and saved in the legacy (pre-1.6, non-zip) torch.save format that
  lukemelas' release files use. The lukemelas block structure (MBConv, SE on the block's input
  width, swish, global average pool, _fc) is the same computation as torchvision's.
- timm: the torchvision weights renamed to timm's keys (conv_stem, blocks.s.i.conv_pw ...,
  classifier), saved as safetensors (compared with the torchvision logits); and the lukemelas
  (SAME) weights under timm's names in a path containing 'tf_efficientnet_b0' (timm's tf_
  weights: compared with the SAME logits).
- the torchvision b0 file again: re-zipped with deflate, stored in bfloat16 (logits of the
  bfloat16-rounded weights), and as a timm-named training checkpoint of a DataParallel model
  ({'epoch': 3, 'state_dict': {'module.conv_stem.weight': ...}}), and pickled with protocol 4.
- bad files: the b0 weights with a 1000-class head, with an int64 stem convolution, and a whole
  pickled model (torch.save(model)).
The fixture cases store their weights in float16; their logits are computed from the
float16-rounded weights in float32, so the importer's F16 -> F32 conversion is part of the test.
"""
import argparse
import json
import os
import struct
import sys
import zipfile

import torch
import torch.nn.functional as F
from torchvision.models import efficientnet as tv

MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float32).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float32).view(1, 3, 1, 1)


def build_torchvision(arch, width=None, seed=0, tf=False):
    """A torchvision EfficientNet with random weights and a Linear(features, 1) head, in eval mode.

    Purely random BatchNorm statistics make a deep network's output almost constant (every image
    gets the same logit), which would make the comparison weak; so the running statistics are
    measured on calibration images (train-mode passes, cumulative average), then the affine BN
    parameters and the SE biases are randomised: logits of order 1 that differ between images.
    """
    torch.manual_seed(seed)
    if width is None:
        model = getattr(tv, arch)()
    else:
        setting, last = tv._efficientnet_conf(arch, width_mult=width, depth_mult=1.0)
        model = tv.EfficientNet(setting, 0.2, last_channel=last)
    features = model.classifier[1].in_features
    model.classifier[1] = torch.nn.Linear(features, 1)
    if tf:
        to_tf_conventions(model)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=g) + 0.5)
                module.bias.copy_(torch.randn(n, generator=g) * 0.2)
                module.reset_running_stats()
                saved_momentum, module.momentum = module.momentum, None
                module._saved_momentum = saved_momentum
            elif isinstance(module, torch.nn.Conv2d) and module.bias is not None:
                module.bias.copy_(torch.randn(module.out_channels, generator=g) * 0.2)
        model.classifier[1].weight.copy_(torch.randn(1, features, generator=g) * (10.0 / features**0.5))
        model.classifier[1].bias.fill_(0.1)
        model.train()
        for _ in range(2):
            model(normalise(images_like(8, 64, g)))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = module._saved_momentum
                # Channels that are (almost) constant on the calibration images would divide by
                # sqrt(eps) and amplify float32 rounding a hundredfold: keep the variance >= 1e-3.
                module.running_var.clamp_(min=1e-3)
    return model.eval()


def images_like(n, size, g):
    """Smooth random colour images (upsampled noise plus a little pixel noise), uint8 NHWC."""
    coarse = torch.rand(n, 3, 6, 6, generator=g)
    smooth = F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    noisy = (smooth * 220 + torch.rand(n, 3, size, size, generator=g) * 35).clamp(0, 255)
    return noisy.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def normalise(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).to(torch.float32).div(255.0).sub(MEAN).div(STD)


def same_padding_pre_hook(module, inputs):
    x = inputs[0]
    pads = []
    for size, k, s in zip(x.shape[2:], module.kernel_size, module.stride):
        out = (size + s - 1) // s
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = pads
    return (F.pad(x, (left, right, top, bottom)),)


def to_tf_conventions(model):
    """lukemelas / timm tf_: TensorFlow SAME padding on every conv, BatchNorm eps 1e-3."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.padding = (0, 0)
            module.register_forward_pre_hook(same_padding_pre_hook)
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 1e-3
            module.momentum = 0.01
    return model


def block_prefixes(model):
    """(torchvision prefix, stage index, index in stage, global index, expands) of every block."""
    out = []
    k = 0
    n_stages = len(model.features) - 2
    for s in range(1, n_stages + 1):
        for i, block in enumerate(model.features[s]):
            out.append((f"features.{s}.{i}.block", s - 1, i, k, len(block.block) == 4))
            k += 1
    return out, n_stages


def rename(model, state, layout):
    blocks, n_stages = block_prefixes(model)
    head = n_stages + 1
    if layout == "lukemelas":
        top = {"features.0.0": "_conv_stem", "features.0.1": "_bn0", f"features.{head}.0": "_conv_head", f"features.{head}.1": "_bn1", "classifier.1": "_fc"}
        expand = {"0.0": "_expand_conv", "0.1": "_bn0", "1.0": "_depthwise_conv", "1.1": "_bn1", "2.fc1": "_se_reduce", "2.fc2": "_se_expand", "3.0": "_project_conv", "3.1": "_bn2"}
        plain = {"0.0": "_depthwise_conv", "0.1": "_bn1", "1.fc1": "_se_reduce", "1.fc2": "_se_expand", "2.0": "_project_conv", "2.1": "_bn2"}
        block_name = lambda s, i, k: f"_blocks.{k}"
    else:
        top = {"features.0.0": "conv_stem", "features.0.1": "bn1", f"features.{head}.0": "conv_head", f"features.{head}.1": "bn2", "classifier.1": "classifier"}
        expand = {"0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2.fc1": "se.conv_reduce", "2.fc2": "se.conv_expand", "3.0": "conv_pwl", "3.1": "bn3"}
        plain = {"0.0": "conv_dw", "0.1": "bn1", "1.fc1": "se.conv_reduce", "1.fc2": "se.conv_expand", "2.0": "conv_pw", "2.1": "bn2"}
        block_name = lambda s, i, k: f"blocks.{s}.{i}"
    renamed = {}
    for key, value in state.items():
        module, param = key.rsplit(".", 1)
        new = top.get(module)
        if new is None:
            for prefix, s, i, k, expands in blocks:
                if module.startswith(prefix + "."):
                    new = f"{block_name(s, i, k)}.{(expand if expands else plain)[module[len(prefix) + 1:]]}"
                    break
        if new is None:
            raise KeyError(key)
        renamed[f"{new}.{param}"] = value
    return renamed


def save_safetensors(state, path):
    names = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for key, tensor in state.items():
        data = tensor.contiguous().numpy().tobytes()
        header[key] = {"dtype": names[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def logits_of(model, images):
    with torch.no_grad():
        return model(normalise(images)).squeeze(1).tolist()


def half_rounded(model):
    """The model with float16-rounded parameters and statistics (what a float16 file holds)."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + [b for b in model.buffers() if b.is_floating_point()]:
            tensor.copy_(tensor.half().float())
    return model


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--fixtures", action="store_true", help="the small committed fixtures (width 0.25, float16)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=3)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    images = images_like(args.batch, args.size, g)
    images.tofile(os.path.join(args.out, "input.bin"))
    cases = []

    def case(name, file, layout, model, width, padding, logits, **extra):
        cases.append({"name": name, "file": file, "layout": layout, "model": model, "widthFactor": width, "padding": padding, "logits": logits, **extra})

    if args.fixtures:
        tvm = half_rounded(build_torchvision("efficientnet_b0", width=0.25, seed=10))
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in tvm.state_dict().items()}
        torch.save(state, os.path.join(args.out, "torchvision-b0-w025-f16.pth"))
        case("torchvision b0 x0.25 f16 (zip)", "torchvision-b0-w025-f16.pth", "torchvision", "efficientnet-b0", 0.25, "symmetric", logits_of(tvm, images))

        lm = half_rounded(build_torchvision("efficientnet_b0", width=0.25, seed=20, tf=True))
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in rename(lm, lm.state_dict(), "lukemelas").items() if not k.endswith("num_batches_tracked")}
        torch.save(state, os.path.join(args.out, "lukemelas-b0-w025-f16.pth"), _use_new_zipfile_serialization=False)
        case("lukemelas b0 x0.25 f16 (legacy format, SAME padding)", "lukemelas-b0-w025-f16.pth", "lukemelas", "efficientnet-b0", 0.25, "same", logits_of(lm, images))
    else:
        for arch, seed in (("efficientnet_b0", 1), ("efficientnet_b3", 2)):
            tvm = build_torchvision(arch, seed=seed)
            name = arch.replace("_", "-")
            logits = logits_of(tvm, images)
            torch.save(tvm.state_dict(), os.path.join(args.out, f"torchvision-{arch}.pth"))
            case(f"torchvision {arch}", f"torchvision-{arch}.pth", "torchvision", name, 1, "symmetric", logits)
            if arch == "efficientnet_b0":
                save_safetensors(rename(tvm, tvm.state_dict(), "timm"), os.path.join(args.out, "timm-efficientnet_b0", "model.safetensors"))
                case("timm efficientnet_b0 (safetensors)", "timm-efficientnet_b0/model.safetensors", "timm", name, 1, "symmetric", logits)
                # The same backbone with a 1000-class ImageNet head: imported with the head dropped.
                state = dict(tvm.state_dict())
                state["classifier.1.weight"] = torch.randn(1000, 1280)
                state["classifier.1.bias"] = torch.randn(1000)
                torch.save(state, os.path.join(args.out, "torchvision-b0-imagenet-head.pth"))
                # The same file re-zipped with deflate (zip tools do that), a bfloat16 copy, and a
                # training checkpoint of a DataParallel model ({'state_dict': {'module.…': …}}).
                with zipfile.ZipFile(os.path.join(args.out, f"torchvision-{arch}.pth")) as src, zipfile.ZipFile(
                    os.path.join(args.out, "torchvision-b0-deflated.pth"), "w", zipfile.ZIP_DEFLATED
                ) as dst:
                    for item in src.infolist():
                        dst.writestr(item.filename, src.read(item.filename))
                case("torchvision efficientnet_b0 (deflated zip)", "torchvision-b0-deflated.pth", "torchvision", name, 1, "symmetric", logits)
                bf16 = build_torchvision(arch, seed=seed)
                with torch.no_grad():
                    for tensor in list(bf16.parameters()) + [b for b in bf16.buffers() if b.is_floating_point()]:
                        tensor.copy_(tensor.bfloat16().float())
                torch.save({k: (v.bfloat16() if v.is_floating_point() else v) for k, v in bf16.state_dict().items()}, os.path.join(args.out, "torchvision-b0-bf16.pth"))
                case("torchvision efficientnet_b0 (bfloat16)", "torchvision-b0-bf16.pth", "torchvision", name, 1, "symmetric", logits_of(bf16, images))
                checkpoint = {"epoch": 3, "arch": "efficientnet_b0", "state_dict": {f"module.{k}": v for k, v in rename(tvm, tvm.state_dict(), "timm").items()}}
                torch.save(checkpoint, os.path.join(args.out, "timm-checkpoint.pth.tar"))
                case("timm training checkpoint of a DataParallel model", "timm-checkpoint.pth.tar", "timm", name, 1, "symmetric", logits)
                torch.save(tvm.state_dict(), os.path.join(args.out, "torchvision-b0-protocol4.pth"), pickle_protocol=4)
                case("torchvision efficientnet_b0 (pickle protocol 4)", "torchvision-b0-protocol4.pth", "torchvision", name, 1, "symmetric", logits)
                # Non-float weights: the stem convolution as int64.
                state = dict(tvm.state_dict())
                state["features.0.0.weight"] = state["features.0.0.weight"].mul(100).long()
                torch.save(state, os.path.join(args.out, "torchvision-b0-int64.pth"))

        lm = build_torchvision("efficientnet_b0", seed=3, tf=True)
        logits = logits_of(lm, images)
        state = {k: v for k, v in rename(lm, lm.state_dict(), "lukemelas").items() if not k.endswith("num_batches_tracked")}
        torch.save(state, os.path.join(args.out, "efficientnet-b0-lukemelas.pth"), _use_new_zipfile_serialization=False)
        case("lukemelas efficientnet-b0 (legacy format, SAME padding)", "efficientnet-b0-lukemelas.pth", "lukemelas", "efficientnet-b0", 1, "same", logits)
        save_safetensors(rename(lm, lm.state_dict(), "timm"), os.path.join(args.out, "hub", "tf_efficientnet_b0", "model.safetensors"))
        case("timm tf_efficientnet_b0 (safetensors, SAME padding)", "hub/tf_efficientnet_b0/model.safetensors", "timm", "efficientnet-b0", 1, "same", logits)

        lm3 = build_torchvision("efficientnet_b3", seed=4, tf=True)
        state = {k: v for k, v in rename(lm3, lm3.state_dict(), "lukemelas").items() if not k.endswith("num_batches_tracked")}
        torch.save(state, os.path.join(args.out, "efficientnet-b3-lukemelas.pth"), _use_new_zipfile_serialization=False)
        case("lukemelas efficientnet-b3 (legacy format, SAME padding)", "efficientnet-b3-lukemelas.pth", "lukemelas", "efficientnet-b3", 1, "same", logits_of(lm3, images))

        # A whole pickled model instead of a state dict.
        torch.save(build_torchvision("efficientnet_b0", width=0.25), os.path.join(args.out, "whole-model.pth"))

    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"torch": torch.__version__, "size": args.size, "batch": args.batch, "cases": cases}, f, indent=1)
    print(json.dumps({"torch": torch.__version__, "cases": [(c["name"], [round(v, 4) for v in c["logits"]]) for c in cases]}))


if __name__ == "__main__":
    sys.exit(main())
