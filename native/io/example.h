// tf.train.Example decoding: the map<string, Feature> with its three list kinds.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace io {

struct Feature {
  enum class Kind { kNone, kBytes, kFloat, kInt64 };
  Kind kind = Kind::kNone;
  std::vector<uint64_t> byteSpans;  // (offset, length) pairs into the parsed buffer: no copies
  std::vector<float> floats;
  std::vector<int64_t> ints;
};

struct NamedFeature {
  std::string key;
  Feature feature;
};

// Thrown for malformed input; `offset` is where in the buffer parsing failed.
class ExampleParseError : public std::runtime_error {
 public:
  ExampleParseError(const std::string& what, uint64_t offset) : std::runtime_error(what), offset(offset) {}
  uint64_t offset;
};

// Every length is checked against its enclosing message before use. A repeated key keeps the
// last value, as protobuf map parsing does.
std::vector<NamedFeature> ParseExample(const uint8_t* data, uint64_t size);

}  // namespace io
