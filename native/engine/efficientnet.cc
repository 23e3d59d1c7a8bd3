#include "efficientnet.h"

#include <c10/core/impl/LocalDispatchKeySet.h>

#include <cmath>

namespace engine {
namespace {

torch::nn::BatchNorm2d makeBatchNorm(int64_t channels, const ModelSpec& spec) {
  return torch::nn::BatchNorm2d(
      torch::nn::BatchNorm2dOptions(channels).eps(spec.bnEps).momentum(spec.bnMomentum));
}

// TensorFlow "SAME": output = ceil(input / stride); the extra pixel of an odd total goes
// after (bottom/right), which is what makes stride-2 layers asymmetric.
int64_t samePadTotal(int64_t size, int64_t kernel, int64_t stride) {
  const int64_t out = (size + stride - 1) / stride;
  return std::max<int64_t>((out - 1) * stride + kernel - size, 0);
}

// Per-sample stochastic depth: drops the whole residual branch of some samples.
torch::Tensor dropPath(const torch::Tensor& x, double rate, bool training, at::Generator& generator) {
  if (!training || rate <= 0) return x;
  const double keep = 1.0 - rate;
  auto mask = torch::empty({x.size(0), 1, 1, 1}, x.options()).bernoulli_(keep, generator);
  return x * mask.div_(keep);
}

// Inverted dropout, as torch::dropout, but drawing from the given generator.
torch::Tensor dropout(const torch::Tensor& x, double rate, bool training, at::Generator& generator) {
  if (!training || rate <= 0) return x;
  const double keep = 1.0 - rate;
  return x * torch::empty_like(x).bernoulli_(keep, generator).div_(keep);
}

}  // namespace

ConvImpl::ConvImpl(int64_t in, int64_t out, int64_t kernel_, int64_t stride_, int64_t groups_,
                   bool hasBias, bool samePadding_)
    : kernel(kernel_), stride(stride_), groups(groups_), samePadding(samePadding_) {
  // timm's _init_weight_goog: He-normal on fan-out.
  const double fanOut = static_cast<double>(kernel * kernel * out) / static_cast<double>(groups);
  weight = register_parameter(
      "weight", torch::randn({out, in / groups, kernel, kernel}) * std::sqrt(2.0 / fanOut));
  if (hasBias) bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor ConvImpl::forward(const torch::Tensor& x) {
  const int64_t strides[2] = {stride, stride};
  const int64_t dilation[2] = {1, 1};
  if (samePadding) {
    const int64_t padH = samePadTotal(x.size(2), kernel, stride);
    const int64_t padW = samePadTotal(x.size(3), kernel, stride);
    torch::Tensor padded = x;
    if (padH > 0 || padW > 0) {
      padded = torch::constant_pad_nd(x, {padW / 2, padW - padW / 2, padH / 2, padH - padH / 2});
    }
    const int64_t noPadding[2] = {0, 0};
    return torch::conv2d(padded, weight, bias, strides, noPadding, dilation, groups);
  }
  const int64_t padding[2] = {kernel / 2, kernel / 2};
  return torch::conv2d(x, weight, bias, strides, padding, dilation, groups);
}

SqueezeExciteImpl::SqueezeExciteImpl(int64_t channels, int64_t reduced) {
  conv_reduce = register_module("conv_reduce", Conv(channels, reduced, 1, 1, 1, true, false));
  conv_expand = register_module("conv_expand", Conv(reduced, channels, 1, 1, 1, true, false));
}

torch::Tensor SqueezeExciteImpl::forward(const torch::Tensor& x) {
  auto s = x.mean({2, 3}, /*keepdim=*/true);
  s = torch::silu(conv_reduce->forward(s));
  return x * torch::sigmoid(conv_expand->forward(s));
}

MBConvImpl::MBConvImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                       double expandRatio, double seRatio, double dropPath_,
                       const ModelSpec& spec)
    : expands(expandRatio != 1.0), hasSkip(stride == 1 && in == out), dropPath(dropPath_) {
  const bool same = spec.samePadding;
  const auto mid = static_cast<int64_t>(std::llround(static_cast<double>(in) * expandRatio));
  // SE width follows the block's input channels, not the expanded ones.
  const int64_t reduced =
      std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(in) * seRatio));
  if (expands) {
    conv_pw = register_module("conv_pw", Conv(in, mid, 1, 1, 1, false, same));
    bn1 = register_module("bn1", makeBatchNorm(mid, spec));
    conv_dw = register_module("conv_dw", Conv(mid, mid, kernel, stride, mid, false, same));
    bn2 = register_module("bn2", makeBatchNorm(mid, spec));
    se = register_module("se", SqueezeExcite(mid, reduced));
    conv_pwl = register_module("conv_pwl", Conv(mid, out, 1, 1, 1, false, same));
    bn3 = register_module("bn3", makeBatchNorm(out, spec));
  } else {
    conv_dw = register_module("conv_dw", Conv(in, in, kernel, stride, in, false, same));
    bn1 = register_module("bn1", makeBatchNorm(in, spec));
    se = register_module("se", SqueezeExcite(in, reduced));
    conv_pw = register_module("conv_pw", Conv(in, out, 1, 1, 1, false, same));
    bn2 = register_module("bn2", makeBatchNorm(out, spec));
  }
}

torch::Tensor MBConvImpl::forward(torch::Tensor x, at::Generator& generator) {
  const auto shortcut = x;
  if (expands) {
    x = torch::silu(bn1->forward(conv_pw->forward(x)));
    x = torch::silu(bn2->forward(conv_dw->forward(x)));
    x = se->forward(x);
    x = bn3->forward(conv_pwl->forward(x));
  } else {
    x = torch::silu(bn1->forward(conv_dw->forward(x)));
    x = se->forward(x);
    x = bn2->forward(conv_pw->forward(x));
  }
  if (hasSkip) x = engine::dropPath(x, dropPath, is_training(), generator) + shortcut;
  return x;
}

EfficientNetImpl::EfficientNetImpl(const ModelSpec& spec, at::Generator generator_)
    : generator(std::move(generator_)), headDropout(spec.headDropout) {
  const bool same = spec.samePadding;
  conv_stem = register_module("conv_stem", Conv(3, spec.stemChannels, 3, 2, 1, false, same));
  bn1 = register_module("bn1", makeBatchNorm(spec.stemChannels, spec));

  int64_t blockCount = 0;
  for (const auto& stage : spec.stages) blockCount += stage.repeats;

  blocks = register_module("blocks", torch::nn::ModuleList());
  int64_t in = spec.stemChannels, blockIndex = 0;
  for (const auto& stage : spec.stages) {
    auto stageModules = torch::nn::ModuleList();
    for (int r = 0; r < stage.repeats; ++r) {
      // Stochastic depth grows linearly with the block's position in the whole network.
      const double rate = spec.dropPathRate * static_cast<double>(blockIndex) /
                          static_cast<double>(blockCount);
      stageModules->push_back(MBConv(in, stage.outChannels, stage.kernel,
                                     r == 0 ? stage.stride : 1, stage.expandRatio, spec.seRatio,
                                     rate, spec));
      in = stage.outChannels;
      ++blockIndex;
    }
    blocks->push_back(stageModules);
  }

  conv_head = register_module("conv_head", Conv(in, spec.headChannels, 1, 1, 1, false, same));
  bn2 = register_module("bn2", makeBatchNorm(spec.headChannels, spec));

  int64_t features = spec.headChannels;
  if (spec.metadataFeatures > 0) {
    meta_fc1 = register_module("meta_fc1", torch::nn::Linear(spec.metadataFeatures, spec.metadataHidden));
    meta_fc2 = register_module("meta_fc2", torch::nn::Linear(spec.metadataHidden, spec.metadataHidden));
    features += spec.metadataHidden;
  }
  if (spec.contextDim > 0) {
    const int64_t pooled = spec.headChannels;
    ctx_query = register_module("ctx_query", torch::nn::Linear(pooled, spec.contextDim));
    ctx_key = register_module("ctx_key", torch::nn::Linear(pooled, spec.contextDim));
    ctx_value = register_module("ctx_value", torch::nn::Linear(pooled, spec.contextDim));
    features += spec.contextDim + 1;
  }
  if (spec.headHidden > 0) {
    head_fc = register_module("head_fc", torch::nn::Linear(features, spec.headHidden));
    features = spec.headHidden;
  }
  classifier = register_module("classifier", torch::nn::Linear(features, 1));
  // Linear layers keep PyTorch's nn.Linear initialisation, as the report's
  // `nn.Linear(num_features, 1)` head had (timm's fan-out rule would give a single-output head
  // weights of +-1 and huge initial logits).
}

torch::Tensor EfficientNetImpl::forwardFeatures(torch::Tensor x) {
  x = torch::silu(bn1->forward(conv_stem->forward(x)));
  for (const auto& stage : *blocks) {
    for (const auto& block : *stage->as<torch::nn::ModuleList>()) {
      x = block->as<MBConv>()->forward(x, generator);
    }
  }
  return torch::silu(bn2->forward(conv_head->forward(x)));
}

torch::Tensor EfficientNetImpl::embed(torch::Tensor x) { return forwardFeatures(std::move(x)).mean({2, 3}); }

torch::Tensor EfficientNetImpl::forward(torch::Tensor x, const HeadInputs& inputs) {
  return classify(embed(std::move(x)), inputs);
}

torch::Tensor EfficientNetImpl::patientContext(const torch::Tensor& embeddings,
                                               const torch::Tensor& groups, bool isolate) {
  const auto others = isolate ? embeddings.detach() : embeddings;
  const auto query = ctx_query->forward(embeddings);
  const auto key = ctx_key->forward(others);
  const auto value = ctx_value->forward(others);
  const int64_t n = embeddings.size(0);
  const auto index = torch::arange(n, groups.options());
  // [N, N]: j is another image of i's patient.
  const auto attends = groups.unsqueeze(1).eq(groups.unsqueeze(0))
                           .logical_and(index.unsqueeze(1).ne(index.unsqueeze(0)));
  const auto hasOthers = attends.any(1, /*keepdim=*/true);
  torch::Tensor scores;
  {
    // Scores in fp32 whatever the autocast type: under fp16 autocast a large q.k would round to
    // inf (and the softmax to NaN), and the -1e9 mask does not fit either. Autocast would cast
    // fp32 inputs of matmul back down, so it is switched off for this product.
    c10::impl::ExcludeDispatchKeyGuard noAutocast(c10::autocast_dispatch_keyset);
    scores = torch::matmul(query.to(torch::kFloat), key.to(torch::kFloat).t()) /
             std::sqrt(static_cast<double>(query.size(1)));
  }
  scores = scores.masked_fill(attends.logical_not(), -1e9);
  // A row without others is a uniform softmax over masked scores: zero it, its context is none.
  const auto weights = torch::softmax(scores, 1) * attends.to(torch::kFloat);
  const auto context = torch::matmul(weights.to(value.scalar_type()), value);
  return torch::cat({context, hasOthers.to(context.scalar_type())}, 1);
}

torch::Tensor EfficientNetImpl::classify(torch::Tensor x, const HeadInputs& inputs) {
  const auto embeddings = x;
  if (!meta_fc1.is_empty()) {
    auto m = torch::silu(meta_fc2->forward(torch::silu(meta_fc1->forward(inputs.metadata.to(x.scalar_type())))));
    x = torch::cat({x, m}, 1);
  }
  if (!ctx_query.is_empty()) {
    x = torch::cat({x, patientContext(embeddings, inputs.groups, inputs.isolateContext).to(x.scalar_type())}, 1);
  }
  if (!head_fc.is_empty()) {
    x = torch::silu(head_fc->forward(x));
  }
  x = engine::dropout(x, headDropout, is_training(), generator);
  return classifier->forward(x).squeeze(1);
}

}  // namespace engine
