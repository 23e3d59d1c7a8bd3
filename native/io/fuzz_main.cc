// Standalone fuzz driver for the io parsers under AddressSanitizer/UBSan (not part of the addon).
// Mutates real records and runs the framing scanner (memory and file sources) and the Example
// parser on exactly-sized heap copies, so any out-of-bounds read is reported, not just crashes.
//
//   g++ -std=c++17 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
//     native/io/crc32c.cc native/io/tfrecord.cc native/io/example.cc native/io/fuzz_main.cc -o build/io-fuzz
//   build/io-fuzz SECONDS SEED FILE.tfrec...
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "example.h"
#include "tfrecord.h"

namespace {

using Bytes = std::vector<uint8_t>;

// Runs `fn` on a heap block of exactly b.size() bytes: one byte past it is a redzone.
template <class Fn>
void OnExactCopy(const Bytes& b, Fn fn) {
  std::unique_ptr<uint8_t[]> copy(new uint8_t[b.size() ? b.size() : 1]);
  if (!b.empty()) std::memcpy(copy.get(), b.data(), b.size());
  fn(copy.get(), static_cast<uint64_t>(b.size()));
}

Bytes Mutate(const Bytes& src, std::mt19937_64& rng) {
  auto r = [&](uint64_t n) { return n ? rng() % n : 0; };
  Bytes b = src;
  const int ops = 1 + static_cast<int>(r(4));
  for (int k = 0; k < ops; k++) {
    switch (r(6)) {
      case 0:
        if (!b.empty()) b[r(b.size())] ^= uint8_t(1u << r(8));
        break;
      case 1:
        b.resize(r(b.size() + 1));
        break;
      case 2: {
        const size_t at = r(b.size() + 1);
        Bytes ins(1 + r(12));
        for (auto& v : ins) v = uint8_t(r(256));
        b.insert(b.begin() + at, ins.begin(), ins.end());
        break;
      }
      case 3: {
        const size_t at = r(b.size() + 1);
        const size_t n = std::min<size_t>(1 + r(16), b.size() - at);
        b.erase(b.begin() + at, b.begin() + at + n);
        break;
      }
      case 4: {
        const size_t at = r(b.size() + 1);
        const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
        if (at < b.size()) b.erase(b.begin() + at);
        b.insert(b.begin() + std::min(at, b.size()), big, big + 5);
        break;
      }
      default: {
        const uint8_t interesting[] = {0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x1a, 0x0b, 0x0d};
        if (!b.empty()) b[r(b.size())] = interesting[r(9)];
      }
    }
  }
  return b;
}

uint64_t ParseAll(const Bytes& payload) {
  uint64_t n = 0;
  OnExactCopy(payload, [&](const uint8_t* p, uint64_t size) {
    try {
      for (const auto& f : io::ParseExample(p, size)) {
        // Touch every span: a bad span would read outside the block.
        for (size_t i = 0; i + 1 < f.feature.byteSpans.size(); i += 2) {
          const uint64_t off = f.feature.byteSpans[i], len = f.feature.byteSpans[i + 1];
          if (off > size || len > size - off) std::abort();
          for (uint64_t j = 0; j < len; j++) n += p[off + j];
        }
      }
    } catch (const io::ExampleParseError& e) {
      if (e.offset > size) std::abort();
    }
  });
  return n;
}

void ScanAll(const Bytes& framed, const std::string& tmpFile, bool viaFile) {
  for (int mode = 0; mode < 4; mode++) {
    io::ScanOptions o;
    o.verifyCrc = mode & 1;
    o.partial = mode & 2;
    OnExactCopy(framed, [&](const uint8_t* p, uint64_t size) {
      io::MemorySource src(p, size);
      io::ScanResult r = io::ScanRecords(src, o);
      for (size_t i = 0; i < r.payloadOffsets.size(); i++)
        if (r.payloadOffsets[i] > size || r.payloadLengths[i] > size - r.payloadOffsets[i]) std::abort();
      if (r.error.kind != io::ScanErrorKind::kNone) io::DescribeScanError(r.error, "fuzz.tfrec");
    });
  }
  if (viaFile) {
    std::ofstream(tmpFile, std::ios::binary).write(reinterpret_cast<const char*>(framed.data()), framed.size());
    io::FileSource src;
    std::string err;
    if (src.Open(tmpFile, &err)) io::ScanRecords(src, io::ScanOptions());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s SECONDS SEED FILE.tfrec...\n", argv[0]);
    return 2;
  }
  const double seconds = std::atof(argv[1]);
  std::mt19937_64 rng(std::strtoull(argv[2], nullptr, 10));
  std::vector<Bytes> seeds;
  for (int a = 3; a < argc; a++) {
    std::ifstream in(argv[a], std::ios::binary);
    Bytes file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    io::MemorySource src(file.data(), file.size());
    io::ScanResult r = io::ScanRecords(src, io::ScanOptions());
    for (size_t i = 0; i < r.payloadOffsets.size() && i < 8; i++)
      seeds.emplace_back(file.begin() + r.payloadOffsets[i], file.begin() + r.payloadOffsets[i] + r.payloadLengths[i]);
  }
  if (seeds.empty()) return 2;
  const std::string tmpFile = "/tmp/io-fuzz-" + std::to_string(getpid()) + ".tfrec";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t cases = 0, sink = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    const Bytes& src = seeds[cases % seeds.size()];
    Bytes payload = Mutate(src, rng);
    sink += ParseAll(payload);
    Bytes framed;
    io::FrameRecord(payload.data(), payload.size(), &framed);
    io::FrameRecord(src.data(), src.size(), &framed);
    if (rng() & 1) framed = Mutate(framed, rng);
    ScanAll(framed, tmpFile, cases % 64 == 0);
    cases++;
  }
  std::remove(tmpFile.c_str());
  std::printf("%llu cases, no sanitizer findings (checksum %llu)\n", (unsigned long long)cases, (unsigned long long)sink);
  return 0;
}
