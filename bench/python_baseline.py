#!/usr/bin/env python3
"""Python PyTorch training-throughput baseline for issue 7 (our C++ engine vs PyTorch, same GPU).

Measures the model side only, like src/bench/model-bench.ts and ../shared/reference/gpu-anchors.md:
random uint8 NHWC images made once on the device, ImageNet-normalised on the device every step,
torchvision efficientnet_b0/_b3 (no weights, one output), class-weighted BCE-with-logits, Adam.
Each measured configuration prints one JSON line on stdout (the keys of our engine's model bench,
plus implementation/deviceName/channelsLast/peakMemoryBytes); notes go to stderr, so
`python3 bench/python_baseline.py > python.jsonl` keeps a clean file for src/bench/compare.ts.

Needs only the standard library, torch and torchvision; works on PyTorch 1.13 (Debian) and 2.x.
"""
import argparse
import contextlib
import gc
import inspect
import json
import math
import sys
import time

import torch
import torchvision

# Our model names -> torchvision constructors.
MODELS = {
    "efficientnet-b0": torchvision.models.efficientnet_b0,
    "efficientnet-b3": torchvision.models.efficientnet_b3,
}
PRECISIONS = ("fp32", "bf16", "fp16")
MODES = ("eager", "graph")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POS_WEIGHT = 3.0
LEARNING_RATE = 1e-3


def note(message):
    print(message, file=sys.stderr, flush=True)


def csv_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="efficientnet-b0,efficientnet-b3")
    parser.add_argument("--batch-sizes", default="8,32,128,256")
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="timed train steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN autotuning, allocator)")
    parser.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                        help="channels_last model and inputs (default: on for CUDA, off for CPU)")
    parser.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    parser.add_argument("--modes", default="eager", help="eager and/or graph (whole step in one CUDA graph)")
    parser.add_argument("--out", help="also append the JSON lines to this file")
    args = parser.parse_args(argv)

    args.models = csv_list(args.models)
    args.batch_sizes = [int(b) for b in csv_list(args.batch_sizes)]
    args.precisions = csv_list(args.precisions)
    args.modes = csv_list(args.modes)
    for name, values, allowed in (("model", args.models, MODELS), ("precision", args.precisions, PRECISIONS),
                                  ("mode", args.modes, MODES)):
        unknown = [v for v in values if v not in allowed]
        if unknown:
            parser.error(f"unknown {name} {', '.join(unknown)}; expected one of {', '.join(allowed)}")
    if any(b < 1 for b in args.batch_sizes) or args.image_size < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("batch sizes, --image-size and --steps must be >= 1, --warmup >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    if args.channels_last is None:
        args.channels_last = args.device == "cuda"
    return args


def skip_reason(device, precision, mode):
    """Why a (device, precision, mode) combination is not measured, or None when it is."""
    if device == "cpu" and precision == "fp16":
        return "fp16 autocast with GradScaler is CUDA-only here"
    if mode == "graph" and device != "cuda":
        return "CUDA graphs need CUDA"
    if mode == "graph" and precision == "fp16":
        # GradScaler's skip-the-step-on-overflow is a host-side decision: it cannot live in a graph.
        return "fp16 needs GradScaler, which does not fit in a CUDA graph"
    return None


def make_optimizer(params, capturable):
    """Adam as the anchors ran it: multi-tensor (foreach) where this PyTorch offers the choice."""
    supported = inspect.signature(torch.optim.Adam.__init__).parameters
    options = {"lr": LEARNING_RATE}
    if "foreach" in supported:
        options["foreach"] = True
    if capturable:
        options["capturable"] = True  # step counters on the GPU, so the update can be replayed
    return torch.optim.Adam(params, **options)


def make_grad_scaler():
    # torch.amp.GradScaler is 2.3+; torch.cuda.amp.GradScaler warns there but is all 1.13 has.
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda")
    return torch.cuda.amp.GradScaler()


def autocast_context(device, precision, for_graph=False):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext()  # fp32: no autocast at all, as in the anchors
    # Under graph capture the autocast weight cache must be off (PyTorch's CUDA graph docs).
    return torch.autocast(device_type=device, dtype=dtype, cache_enabled=False if for_graph else None)


class Workload:
    """One configuration's model, optimizer, fixed batch and loss: what a train step touches."""

    def __init__(self, model_name, batch_size, image_size, device, precision, channels_last, capturable):
        torch.manual_seed(0)
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.model = MODELS[model_name](weights=None, num_classes=1).to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.parameter_count = sum(p.numel() for p in self.model.parameters())
        self.optimizer = make_optimizer(self.model.parameters(), capturable)
        self.scaler = make_grad_scaler() if precision == "fp16" else None
        self.loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([POS_WEIGHT], device=device))
        # Made once on the device: the figure is the model-side ceiling, no data loading.
        self.images = torch.randint(0, 256, (batch_size, image_size, image_size, 3), dtype=torch.uint8, device=device)
        self.labels = (torch.arange(batch_size, device=device) % 2).float().view(batch_size, 1)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def normalised_input(self):
        # As our engine does: uint8 NHWC -> float NCHW in [0, 1] (the permute already has
        # channels_last strides), ImageNet mean/std, then the layout the model wants.
        x = self.images.permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def step(self, for_graph=False):
        """One training step; returns the loss tensor (still on the device)."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast_context(self.device, self.precision, for_graph):
            loss = self.loss_fn(self.model(self.normalised_input()), self.labels)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach()


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_eager(work, warmup, steps):
    """Seconds for `steps` eager steps and their summed loss."""
    for _ in range(warmup):
        work.step()
    synchronize(work.device)
    # Our engine reads every step's loss; calling .item() here would add a host sync per step
    # that the engine pays differently. Keeping the loss tensors on the device and summing them
    # after the window keeps PyTorch's asynchronous launch queue (its normal, fastest way of
    # running), so this is the fair (upper) eager figure.
    losses = []
    started = time.perf_counter()
    for _ in range(steps):
        losses.append(work.step())
    synchronize(work.device)
    seconds = time.perf_counter() - started
    return seconds, torch.stack(losses).float().sum().item()


def time_graph(work, warmup, steps):
    """Whole-network capture (PyTorch's CUDA graph docs): forward, backward and capturable Adam
    recorded once, then replayed. Warm-up runs eagerly on a side stream so cuDNN autotuning, lazy
    Adam state and the allocator settle before capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(warmup, 1)):  # at least one: Adam's state must exist before capture
            work.step(for_graph=True)
    torch.cuda.current_stream().wait_stream(side)

    # The graph adds each replay's loss to a device accumulator: a per-step loss without a host read.
    loss_sum = torch.zeros((), device="cuda")
    graph = torch.cuda.CUDAGraph()
    work.optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss_sum += work.step(for_graph=True).float()
    graph.replay()  # the first replay uploads the graph: keep it out of the timed window
    synchronize("cuda")
    loss_sum.zero_()
    started = time.perf_counter()
    for _ in range(steps):
        graph.replay()
    synchronize("cuda")
    seconds = time.perf_counter() - started
    return seconds, loss_sum.item()


def base_row(args, model_name, batch_size, precision, mode):
    return {
        "benchmark": "model",
        "implementation": f"python-{mode}",
        "model": model_name,
        "widthFactor": 1,  # torchvision has no width multiplier beyond the named variants
        "batchSize": batch_size,
        "imageSize": args.image_size,
        "accumulate": 1,
        "device": args.device,
        "deviceName": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "precision": precision,
        "channelsLast": args.channels_last,
        "parameterCount": None,
        "warmupSteps": args.warmup,
        "steps": args.steps,
        "torchVersion": torch.__version__,
    }


def measure(args, row, mode):
    """Fills row with the timing of one configuration (mutating it, so an error row keeps what
    was learnt before the failure, such as the parameter count)."""
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    work = Workload(row["model"], row["batchSize"], args.image_size, args.device, row["precision"],
                    args.channels_last, capturable=mode == "graph")
    row["parameterCount"] = work.parameter_count
    timer = time_graph if mode == "graph" else time_eager
    seconds, loss_sum = timer(work, args.warmup, args.steps)
    mean_loss = loss_sum / args.steps
    row.update({
        "seconds": seconds,
        "iterationsPerSecond": args.steps / seconds,
        "imagesPerSecond": args.steps * row["batchSize"] / seconds,
        "peakMemoryBytes": torch.cuda.max_memory_allocated() if args.device == "cuda" else None,
        # JSON has no NaN: a diverged (non-finite) loss is written as null.
        "meanLoss": mean_loss if math.isfinite(mean_loss) else None,
    })


def is_out_of_memory(error):
    return isinstance(error, RuntimeError) and "out of memory" in str(error)


def free_memory(device):
    gc.collect()  # the failed step's tensors are only reachable through dead frames
    if device == "cuda":
        torch.cuda.empty_cache()


# The documented key order (error rows leave out the timings they never got, and add "error").
ROW_KEYS = ("benchmark", "implementation", "model", "widthFactor", "batchSize", "imageSize", "accumulate",
            "device", "deviceName", "precision", "channelsLast", "parameterCount", "warmupSteps", "steps",
            "seconds", "iterationsPerSecond", "imagesPerSecond", "peakMemoryBytes", "meanLoss", "torchVersion",
            "error")


def emit(row, out_file):
    line = json.dumps({key: row[key] for key in ROW_KEYS if key in row}, allow_nan=False)
    print(line, flush=True)
    if out_file is not None:
        out_file.write(line + "\n")
        out_file.flush()


def configure_backends(device):
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune convolutions for the fixed shapes
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def main(argv=None):
    args = parse_args(argv)
    configure_backends(args.device)
    note(f"torch {torch.__version__}, torchvision {torchvision.__version__}, device {args.device}, "
         f"channels_last {args.channels_last}")
    out_file = open(args.out, "a", encoding="utf-8") if args.out else None
    failures = 0
    try:
        for model_name in args.models:
            for precision in args.precisions:
                for mode in args.modes:
                    reason = skip_reason(args.device, precision, mode)
                    if reason:
                        note(f"skipping {model_name} {precision} {mode} on {args.device}: {reason}")
                        continue
                    for batch_size in args.batch_sizes:
                        row = base_row(args, model_name, batch_size, precision, mode)
                        note(f"measuring {model_name} batch {batch_size} {precision} {mode} ...")
                        try:
                            measure(args, row, mode)
                        except RuntimeError as error:
                            # One failing configuration (most often OOM at a large batch) must not
                            # lose the sweep's other rows; anything else is still counted as a failure.
                            row["error"] = "out of memory" if is_out_of_memory(error) else str(error).split("\n")[0]
                            if not is_out_of_memory(error):
                                failures += 1
                            note(f"  {row['error']}")
                        free_memory(args.device)
                        emit(row, out_file)
    finally:
        if out_file is not None:
            out_file.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
