// EfficientNet B0-B7 in torch::nn, with timm's module names so that state-dict keys read like
// Python's (`conv_stem.weight`, `blocks.1.0.conv_pw.weight`, `bn2.running_var`, `classifier.bias`).
#pragma once

#include <torch/torch.h>

#include "config.h"

namespace engine {

// A 2-D convolution whose own parameters are `weight` (and `bias`), so keys carry no wrapper
// level, with either symmetric padding or TensorFlow "SAME" padding (asymmetric on stride 2).
struct ConvImpl : torch::nn::Module {
  ConvImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, bool bias,
           bool samePadding);
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight, bias;
  int64_t kernel, stride, groups;
  bool samePadding;
};
TORCH_MODULE(Conv);

struct SqueezeExciteImpl : torch::nn::Module {
  SqueezeExciteImpl(int64_t channels, int64_t reducedChannels);
  torch::Tensor forward(const torch::Tensor& x);

  Conv conv_reduce{nullptr}, conv_expand{nullptr};
};
TORCH_MODULE(SqueezeExcite);

// timm's DepthwiseSeparableConv (expand ratio 1: conv_dw, bn1, se, conv_pw, bn2) and
// InvertedResidual (conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3) in one class: the names
// differ only in whether there is an expansion convolution.
struct MBConvImpl : torch::nn::Module {
  MBConvImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, double expandRatio,
             double seRatio, double dropPath, const ModelSpec& spec);
  torch::Tensor forward(torch::Tensor x, at::Generator& generator);

  bool expands, hasSkip;
  double dropPath;
  Conv conv_pw{nullptr}, conv_dw{nullptr}, conv_pwl{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  SqueezeExcite se{nullptr};
};
TORCH_MODULE(MBConv);

// The head: the tensors after pooling (classifier, head_fc, and the metadata and patient-context
// branches), by name prefix. The one list of them: the optimizer gives these the head's learning
// rate, and importing pretrained weights (src/model/weights/store.ts, through EngineInfo) leaves
// them freshly initialised.
inline const std::vector<std::string> kHeadTensorPrefixes = {"classifier.", "head_fc.", "meta_fc", "ctx_"};
inline bool isHeadTensor(const std::string& name) {
  for (const auto& prefix : kHeadTensorPrefixes) {
    if (name.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// What the head reads besides the pooled image features. Each is undefined when the model has no
// such branch.
struct HeadInputs {
  torch::Tensor metadata;  // float [N, metadataFeatures]
  torch::Tensor groups;    // int64 [N]: equal values = the same patient (patient context)
  bool isolateContext = false;  // see patientContext
};

// Training-time randomness (dropout, stochastic depth) draws from `generator`, the engine's own,
// so engines in one process do not disturb each other's random streams.
struct EfficientNetImpl : torch::nn::Module {
  EfficientNetImpl(const ModelSpec& spec, at::Generator generator);
  torch::Tensor forwardFeatures(torch::Tensor x);
  // The image embedding: forwardFeatures pooled over space, [N, C].
  torch::Tensor embed(torch::Tensor x);
  // Logits of shape [N] from embeddings (one output: melanoma vs not), given the head's other
  // inputs (see HeadInputs).
  torch::Tensor classify(torch::Tensor embeddings, const HeadInputs& inputs = {});
  // classify(embed(x), inputs).
  torch::Tensor forward(torch::Tensor x, const HeadInputs& inputs = {});
  // [N, contextDim + 1]: for each image, attention over the embeddings of the other images of
  // its patient, and 1 when there are any (all zeros for an image alone). With `isolate`, the
  // other images' embeddings enter as constants, so that the gradient of image i's logit
  // reaches image i's features only (Grad-CAM of a batch in one backward).
  torch::Tensor patientContext(const torch::Tensor& embeddings, const torch::Tensor& groups,
                               bool isolate);

  at::Generator generator;
  Conv conv_stem{nullptr}, conv_head{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::Linear head_fc{nullptr}, classifier{nullptr};
  torch::nn::Linear meta_fc1{nullptr}, meta_fc2{nullptr};
  torch::nn::Linear ctx_query{nullptr}, ctx_key{nullptr}, ctx_value{nullptr};
  double headDropout;
};
TORCH_MODULE(EfficientNet);

}  // namespace engine
