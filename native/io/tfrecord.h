// TFRecord framing: [uint64 length][masked crc32c(length)][payload][masked crc32c(payload)].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace io {

constexpr uint64_t kHeaderBytes = 12;  // length + its CRC
constexpr uint64_t kFooterBytes = 4;   // payload CRC

enum class ScanErrorKind { kNone, kTruncated, kLengthCrc, kDataCrc, kIo, kOpen };

struct ScanError {
  ScanErrorKind kind = ScanErrorKind::kNone;
  uint64_t recordIndex = 0;
  uint64_t offset = 0;  // byte offset of the record's first header byte
  std::string detail;
};

struct ScanOptions {
  bool verifyCrc = true;
  // Stop quietly before an incomplete record at the end (a streaming reader feeds the rest later).
  bool partial = false;
  uint64_t baseOffset = 0;  // file offset of the source's first byte, for offsets and messages
  uint64_t firstIndex = 0;  // record index of the first record in the source
};

struct ScanResult {
  std::vector<uint64_t> payloadOffsets;  // absolute offsets of payloads
  std::vector<uint64_t> payloadLengths;
  uint64_t consumed = 0;  // bytes of complete records (relative to the source start)
  ScanError error;
};

// Random access to the bytes being scanned: a memory span or a file read piecewise.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t Size() const = 0;
  // False (with *error set) on an I/O failure.
  virtual bool Read(uint64_t offset, uint64_t n, uint8_t* dst, std::string* error) = 0;
  virtual bool Crc(uint64_t offset, uint64_t n, uint32_t* crc, std::string* error) = 0;
};

class MemorySource : public ByteSource {
 public:
  MemorySource(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  uint64_t Size() const override { return size_; }
  bool Read(uint64_t offset, uint64_t n, uint8_t* dst, std::string*) override;
  bool Crc(uint64_t offset, uint64_t n, uint32_t* crc, std::string*) override;

 private:
  const uint8_t* data_;
  uint64_t size_;
};

// Reads with pread in bounded chunks: multi-GB files are never held in memory.
class FileSource : public ByteSource {
 public:
  ~FileSource() override;
  bool Open(const std::string& path, std::string* error);
  uint64_t Size() const override { return size_; }
  bool Read(uint64_t offset, uint64_t n, uint8_t* dst, std::string* error) override;
  bool Crc(uint64_t offset, uint64_t n, uint32_t* crc, std::string* error) override;

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::vector<uint8_t> chunk_;
};

ScanResult ScanRecords(ByteSource& source, const ScanOptions& options);

// The full error text: "<file>: record <i> at byte <offset>: <detail>. <fix>".
std::string DescribeScanError(const ScanError& error, const std::string& file);
const char* ScanErrorCode(ScanErrorKind kind);

// Appends one framed record to `out`.
void FrameRecord(const uint8_t* payload, uint64_t n, std::vector<uint8_t>* out);

}  // namespace io
