// N-API surface of the io addon. TypeScript (src/data/tfrecord.ts) validates options and owns
// files, streams and Promises; this layer converts values and never trusts a length.
#include <napi.h>

#include <string>

#include "crc32c.h"
#include "example.h"
#include "tfrecord.h"

namespace {

#define IO_REQUIRE(cond, msg)                                  \
  do {                                                         \
    if (!(cond)) throw Napi::TypeError::New(env, (msg));       \
  } while (0)

struct Bytes {
  const uint8_t* data;
  uint64_t size;
};

Bytes ArgBytes(const Napi::Env& env, const Napi::Value& v, const char* name) {
  IO_REQUIRE(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array,
             std::string("Expected a Buffer or Uint8Array for ") + name);
  auto arr = v.As<Napi::Uint8Array>();
  return {arr.Data(), arr.ByteLength()};
}

Napi::Float64Array ToFloat64Array(Napi::Env env, const std::vector<uint64_t>& values) {
  auto out = Napi::Float64Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); i++) out[i] = static_cast<double>(values[i]);
  return out;
}

Napi::Error ScanErrorToJs(Napi::Env env, const io::ScanError& e, const std::string& file) {
  Napi::Error err = Napi::Error::New(env, io::DescribeScanError(e, file));
  err.Set("code", Napi::String::New(env, io::ScanErrorCode(e.kind)));
  err.Set("recordIndex", Napi::Number::New(env, static_cast<double>(e.recordIndex)));
  err.Set("offset", Napi::Number::New(env, static_cast<double>(e.offset)));
  err.Set("detail", Napi::String::New(env, e.detail));
  if (!file.empty()) err.Set("file", Napi::String::New(env, file));
  return err;
}

Napi::Object ScanResultToJs(Napi::Env env, const io::ScanResult& r, uint64_t size) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("offsets", ToFloat64Array(env, r.payloadOffsets));
  out.Set("lengths", ToFloat64Array(env, r.payloadLengths));
  out.Set("consumed", Napi::Number::New(env, static_cast<double>(r.consumed)));
  out.Set("size", Napi::Number::New(env, static_cast<double>(size)));
  return out;
}

io::ScanOptions ArgScanOptions(const Napi::Env& env, const Napi::Value& v, std::string* file) {
  io::ScanOptions o;
  if (v.IsUndefined()) return o;
  IO_REQUIRE(v.IsObject(), "Expected an options object");
  Napi::Object obj = v.As<Napi::Object>();
  auto get = [&](const char* k) { return obj.Get(k); };
  if (get("verifyCrc").IsBoolean()) o.verifyCrc = get("verifyCrc").As<Napi::Boolean>();
  if (get("partial").IsBoolean()) o.partial = get("partial").As<Napi::Boolean>();
  // Negative or NaN doubles would be undefined behaviour as uint64: they count as 0.
  auto count = [&](const char* k) -> uint64_t {
    if (!get(k).IsNumber()) return 0;
    const double d = get(k).As<Napi::Number>().DoubleValue();
    return d > 0 ? static_cast<uint64_t>(d) : 0;
  };
  o.baseOffset = count("baseOffset");
  o.firstIndex = count("firstIndex");
  if (get("file").IsString()) *file = get("file").As<Napi::String>();
  return o;
}

// crc32c(bytes, impl?: 'auto' | 'hardware' | 'software', initial?: number): number
Napi::Value Crc32c(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes b = ArgBytes(env, info[0], "bytes");
  std::string impl = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "auto";
  uint32_t initial = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  uint32_t crc;
  if (impl == "software") {
    crc = io::Crc32cSoftware(initial, b.data, b.size);
  } else if (impl == "hardware") {
    if (!io::Crc32cHardwareAvailable())
      throw Napi::Error::New(env, "The SSE4.2 CRC32C instruction is not available on this CPU");
    crc = io::Crc32cHardware(initial, b.data, b.size);
  } else {
    IO_REQUIRE(impl == "auto", "Expected 'auto', 'hardware' or 'software' for impl but received '" + impl + "'");
    crc = io::Crc32c(initial, b.data, b.size);
  }
  return Napi::Number::New(env, crc);
}

Napi::Value MaskCrc(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), io::MaskCrc(info[0].As<Napi::Number>().Uint32Value()));
}

Napi::Value UnmaskCrc(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), io::UnmaskCrc(info[0].As<Napi::Number>().Uint32Value()));
}

Napi::Value HardwareAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), io::Crc32cHardwareAvailable());
}

// scanBuffer(bytes, options): in-memory bytes are scanned synchronously (CRC runs at GB/s).
Napi::Value ScanBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes b = ArgBytes(env, info[0], "bytes");
  std::string file;
  io::ScanOptions options = ArgScanOptions(env, info[1], &file);
  io::MemorySource source(b.data, b.size);
  io::ScanResult r = io::ScanRecords(source, options);
  if (r.error.kind != io::ScanErrorKind::kNone) throw ScanErrorToJs(env, r.error, file);
  return ScanResultToJs(env, r, b.size);
}

// scanFile(path, options): Promise; reads the file piecewise on the libuv pool.
class ScanFileWorker : public Napi::AsyncWorker {
 public:
  ScanFileWorker(Napi::Env env, std::string path, io::ScanOptions options)
      : Napi::AsyncWorker(env, "io.scanFile"), deferred_(Napi::Promise::Deferred::New(env)),
        path_(std::move(path)), options_(options) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    io::FileSource source;
    std::string error;
    if (!source.Open(path_, &error)) {
      result_.error.kind = io::ScanErrorKind::kOpen;
      result_.error.detail = error;
      return;
    }
    size_ = source.Size();
    result_ = io::ScanRecords(source, options_);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (result_.error.kind != io::ScanErrorKind::kNone)
      deferred_.Reject(ScanErrorToJs(env, result_.error, path_).Value());
    else
      deferred_.Resolve(ScanResultToJs(env, result_, size_));
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::string path_;
  io::ScanOptions options_;
  io::ScanResult result_;
  uint64_t size_ = 0;
};

Napi::Value ScanFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IO_REQUIRE(info[0].IsString(), "Expected a file path string");
  std::string file;
  io::ScanOptions options = ArgScanOptions(env, info[1], &file);
  auto* worker = new ScanFileWorker(env, info[0].As<Napi::String>(), options);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// parseExample(bytes): [{ key, kind: 'bytes', spans } | { key, kind: 'float', values } |
//                       { key, kind: 'int64', values } | { key, kind: 'none' }]
Napi::Value ParseExample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes b = ArgBytes(env, info[0], "bytes");
  std::vector<io::NamedFeature> features;
  try {
    features = io::ParseExample(b.data, b.size);
  } catch (const io::ExampleParseError& e) {
    Napi::Error err = Napi::Error::New(env, e.what());
    err.Set("code", Napi::String::New(env, "ERR_EXAMPLE_MALFORMED"));
    err.Set("offset", Napi::Number::New(env, static_cast<double>(e.offset)));
    throw err;
  }
  Napi::Array out = Napi::Array::New(env, features.size());
  for (size_t i = 0; i < features.size(); i++) {
    const io::Feature& f = features[i].feature;
    Napi::Object o = Napi::Object::New(env);
    o.Set("key", Napi::String::New(env, features[i].key));
    switch (f.kind) {
      case io::Feature::Kind::kBytes:
        o.Set("kind", "bytes");
        o.Set("spans", ToFloat64Array(env, f.byteSpans));
        break;
      case io::Feature::Kind::kFloat: {
        o.Set("kind", "float");
        auto values = Napi::Float32Array::New(env, f.floats.size());
        for (size_t j = 0; j < f.floats.size(); j++) values[j] = f.floats[j];
        o.Set("values", values);
        break;
      }
      case io::Feature::Kind::kInt64: {
        o.Set("kind", "int64");
        auto values = Napi::BigInt64Array::New(env, f.ints.size());
        for (size_t j = 0; j < f.ints.size(); j++) values[j] = f.ints[j];
        o.Set("values", values);
        break;
      }
      case io::Feature::Kind::kNone:
        o.Set("kind", "none");
        break;
    }
    out[i] = o;
  }
  return out;
}

// frameRecords(payloads: Uint8Array[]): Buffer holding every payload framed with its CRCs.
Napi::Value FrameRecords(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  IO_REQUIRE(info[0].IsArray(), "Expected an array of Buffers");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<uint8_t> out;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Bytes b = ArgBytes(env, arr.Get(i), "a record payload");
    io::FrameRecord(b.data, b.size, &out);
  }
  return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New(env, Crc32c, "crc32c"));
  exports.Set("crc32cHardwareAvailable", Napi::Function::New(env, HardwareAvailable, "crc32cHardwareAvailable"));
  exports.Set("maskCrc", Napi::Function::New(env, MaskCrc, "maskCrc"));
  exports.Set("unmaskCrc", Napi::Function::New(env, UnmaskCrc, "unmaskCrc"));
  exports.Set("scanBuffer", Napi::Function::New(env, ScanBuffer, "scanBuffer"));
  exports.Set("scanFile", Napi::Function::New(env, ScanFile, "scanFile"));
  exports.Set("parseExample", Napi::Function::New(env, ParseExample, "parseExample"));
  exports.Set("frameRecords", Napi::Function::New(env, FrameRecords, "frameRecords"));
  return exports;
}

}  // namespace

NODE_API_MODULE(io, Init)
