#include "example.h"

#include <cstring>
#include <unordered_map>

namespace io {

namespace {

enum WireType { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

// A cursor over [pos, end) of one message; sub-messages get their own cursor.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t pos, uint64_t end) : base_(base), pos_(pos), end_(end) {}

  bool Done() const { return pos_ >= end_; }
  uint64_t Pos() const { return pos_; }

  uint64_t Varint(const char* what) {
    uint64_t value = 0;
    const uint64_t start = pos_;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= end_) Fail(std::string("truncated varint (") + what + ")", start);
      const uint8_t b = base_[pos_++];
      value |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return value;
    }
    Fail(std::string("varint longer than 10 bytes (") + what + ")", start);
  }

  // Reads a tag; returns false at the end of the message.
  bool Tag(uint32_t* field, int* wire) {
    if (Done()) return false;
    const uint64_t start = pos_;
    const uint64_t tag = Varint("field tag");
    if (tag >> 32) Fail("field tag out of range", start);
    *field = uint32_t(tag >> 3);
    *wire = int(tag & 7);
    if (*field == 0) Fail("field number 0", start);
    return true;
  }

  // A length-delimited field: returns the cursor over its bytes and advances past them.
  Cursor Sub(const char* what) {
    const uint64_t start = pos_;
    const uint64_t len = Varint(what);
    if (len > end_ - pos_)
      Fail(std::string(what) + " claims " + std::to_string(len) + " bytes but only " + std::to_string(end_ - pos_) +
               " remain in its enclosing message",
           start);
    Cursor sub(base_, pos_, pos_ + len);
    pos_ += len;
    return sub;
  }

  void Fixed(uint64_t n, void* dst, const char* what) {
    if (n > end_ - pos_) Fail(std::string("truncated ") + what, pos_);
    if (dst) std::memcpy(dst, base_ + pos_, n);
    pos_ += n;
  }

  void Skip(int wire) {
    switch (wire) {
      case kVarint:
        Varint("unknown field");
        return;
      case kFixed64:
        Fixed(8, nullptr, "unknown fixed64 field");
        return;
      case kLen:
        Sub("unknown field");
        return;
      case kFixed32:
        Fixed(4, nullptr, "unknown fixed32 field");
        return;
      default:
        Fail("unsupported wire type " + std::to_string(wire), pos_);
    }
  }

  [[noreturn]] static void Fail(const std::string& what, uint64_t offset) { throw ExampleParseError(what, offset); }

  const uint8_t* base_;
  uint64_t pos_, end_;
};

// oneof semantics: switching kind drops the previous list; the same kind appends (merge).
void SetKind(Feature* f, Feature::Kind kind) {
  if (f->kind == kind) return;
  *f = Feature();
  f->kind = kind;
}

void ParseBytesList(Cursor c, Feature* f) {
  SetKind(f, Feature::Kind::kBytes);
  uint32_t field;
  int wire;
  while (c.Tag(&field, &wire)) {
    if (field == 1 && wire == kLen) {
      Cursor value = c.Sub("bytes_list value");
      f->byteSpans.push_back(value.pos_);
      f->byteSpans.push_back(value.end_ - value.pos_);
    } else {
      c.Skip(wire);
    }
  }
}

void ParseFloatList(Cursor c, Feature* f) {
  SetKind(f, Feature::Kind::kFloat);
  uint32_t field;
  int wire;
  while (c.Tag(&field, &wire)) {
    if (field == 1 && wire == kLen) {  // packed
      const uint64_t start = c.Pos();
      Cursor packed = c.Sub("packed float_list");
      const uint64_t n = packed.end_ - packed.pos_;
      if (n % 4) Cursor::Fail("packed float_list of " + std::to_string(n) + " bytes is not a multiple of 4", start);
      for (uint64_t i = 0; i < n / 4; i++) {
        float v;
        packed.Fixed(4, &v, "float");  // little-endian host assumed (x86, arm64)
        f->floats.push_back(v);
      }
    } else if (field == 1 && wire == kFixed32) {  // unpacked
      float v;
      c.Fixed(4, &v, "float");
      f->floats.push_back(v);
    } else {
      c.Skip(wire);
    }
  }
}

void ParseInt64List(Cursor c, Feature* f) {
  SetKind(f, Feature::Kind::kInt64);
  uint32_t field;
  int wire;
  while (c.Tag(&field, &wire)) {
    if (field == 1 && wire == kLen) {  // packed
      Cursor packed = c.Sub("packed int64_list");
      while (!packed.Done()) f->ints.push_back(static_cast<int64_t>(packed.Varint("int64 value")));
    } else if (field == 1 && wire == kVarint) {  // unpacked
      f->ints.push_back(static_cast<int64_t>(c.Varint("int64 value")));
    } else {
      c.Skip(wire);
    }
  }
}

void ParseFeature(Cursor c, Feature* f) {
  uint32_t field;
  int wire;
  while (c.Tag(&field, &wire)) {
    if (wire == kLen && field == 1)
      ParseBytesList(c.Sub("bytes_list"), f);
    else if (wire == kLen && field == 2)
      ParseFloatList(c.Sub("float_list"), f);
    else if (wire == kLen && field == 3)
      ParseInt64List(c.Sub("int64_list"), f);
    else
      c.Skip(wire);
  }
}

// `index` maps keys to positions in `out`: malformed input with many entries stays linear.
using KeyIndex = std::unordered_map<std::string, size_t>;

void ParseEntry(Cursor c, std::vector<NamedFeature>* out, KeyIndex* index) {
  NamedFeature entry;
  uint32_t field;
  int wire;
  while (c.Tag(&field, &wire)) {
    if (field == 1 && wire == kLen) {
      Cursor key = c.Sub("feature name");
      entry.key.assign(reinterpret_cast<const char*>(key.base_ + key.pos_), key.end_ - key.pos_);
    } else if (field == 2 && wire == kLen) {
      ParseFeature(c.Sub("feature value"), &entry.feature);
    } else {
      c.Skip(wire);
    }
  }
  auto found = index->find(entry.key);
  if (found != index->end()) {
    (*out)[found->second].feature = std::move(entry.feature);
    return;
  }
  index->emplace(entry.key, out->size());
  out->push_back(std::move(entry));
}

void ParseFeatures(Cursor c, std::vector<NamedFeature>* out, KeyIndex* index) {
  uint32_t field;
  int wire;
  while (c.Tag(&field, &wire)) {
    if (field == 1 && wire == kLen)
      ParseEntry(c.Sub("feature map entry"), out, index);
    else
      c.Skip(wire);
  }
}

}  // namespace

std::vector<NamedFeature> ParseExample(const uint8_t* data, uint64_t size) {
  std::vector<NamedFeature> out;
  KeyIndex index;
  Cursor c(data, 0, size);
  uint32_t field;
  int wire;
  while (c.Tag(&field, &wire)) {
    if (field == 1 && wire == kLen)
      ParseFeatures(c.Sub("features"), &out, &index);
    else
      c.Skip(wire);
  }
  return out;
}

}  // namespace io
