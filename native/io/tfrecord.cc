#include "tfrecord.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "crc32c.h"

namespace io {

namespace {

uint64_t LoadU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];  // little-endian on any host
  return v;
}

uint32_t LoadU32(const uint8_t* p) {
  return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

void StoreU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = uint8_t(v >> (8 * i));
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

bool MemorySource::Read(uint64_t offset, uint64_t n, uint8_t* dst, std::string*) {
  std::memcpy(dst, data_ + offset, n);
  return true;
}

bool MemorySource::Crc(uint64_t offset, uint64_t n, uint32_t* crc, std::string*) {
  *crc = Crc32c(0, data_ + offset, n);
  return true;
}

FileSource::~FileSource() {
  if (fd_ >= 0) close(fd_);
}

bool FileSource::Open(const std::string& path, std::string* error) {
  fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd_ < 0 || fstat(fd_, &st) != 0) {
    *error = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *error = "not a regular file";
    return false;
  }
  size_ = static_cast<uint64_t>(st.st_size);
  return true;
}

bool FileSource::Read(uint64_t offset, uint64_t n, uint8_t* dst, std::string* error) {
  while (n > 0) {
    ssize_t got = pread(fd_, dst, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      *error = got < 0 ? std::string("read failed: ") + std::strerror(errno) : "file shrank while reading";
      return false;
    }
    dst += got;
    offset += got;
    n -= got;
  }
  return true;
}

bool FileSource::Crc(uint64_t offset, uint64_t n, uint32_t* crc, std::string* error) {
  constexpr uint64_t kChunk = 1 << 20;
  if (chunk_.empty()) chunk_.resize(kChunk);
  uint32_t c = 0;
  while (n > 0) {
    uint64_t take = n < kChunk ? n : kChunk;
    if (!Read(offset, take, chunk_.data(), error)) return false;
    c = Crc32c(c, chunk_.data(), take);
    offset += take;
    n -= take;
  }
  *crc = c;
  return true;
}

ScanResult ScanRecords(ByteSource& source, const ScanOptions& options) {
  ScanResult result;
  const uint64_t size = source.Size();
  uint64_t pos = 0;
  uint64_t index = options.firstIndex;
  auto fail = [&](ScanErrorKind kind, std::string detail) {
    result.error.kind = kind;
    result.error.recordIndex = index;
    result.error.offset = options.baseOffset + pos;
    result.error.detail = std::move(detail);
  };
  uint8_t header[kHeaderBytes];
  while (pos < size) {
    const uint64_t remaining = size - pos;
    if (remaining < kHeaderBytes) {
      if (!options.partial)
        fail(ScanErrorKind::kTruncated, "the file ends inside a record header (" + std::to_string(remaining) +
                                            " of 12 bytes present)");
      break;
    }
    std::string ioError;
    if (!source.Read(pos, kHeaderBytes, header, &ioError)) {
      fail(ScanErrorKind::kIo, ioError);
      break;
    }
    const uint64_t length = LoadU64(header);
    if (options.verifyCrc) {
      const uint32_t stored = LoadU32(header + 8);
      const uint32_t computed = MaskCrc(Crc32c(0, header, 8));
      if (stored != computed) {
        fail(ScanErrorKind::kLengthCrc, "length CRC mismatch (stored " + Hex(stored) + ", computed " +
                                            Hex(computed) + ")");
        break;
      }
    }
    // Compare before adding so a corrupt huge length cannot overflow.
    const uint64_t available = remaining - kHeaderBytes;
    if (length > available || available - length < kFooterBytes) {
      if (!options.partial)
        fail(ScanErrorKind::kTruncated, "record of " + std::to_string(length) + " payload bytes needs " +
                                            std::to_string(length + kFooterBytes) + " bytes after its header but the file ends after " +
                                            std::to_string(available));
      break;
    }
    if (options.verifyCrc) {
      uint8_t footer[kFooterBytes];
      uint32_t crc = 0;
      if (!source.Read(pos + kHeaderBytes + length, kFooterBytes, footer, &ioError) ||
          !source.Crc(pos + kHeaderBytes, length, &crc, &ioError)) {
        fail(ScanErrorKind::kIo, ioError);
        break;
      }
      const uint32_t stored = LoadU32(footer);
      const uint32_t computed = MaskCrc(crc);
      if (stored != computed) {
        fail(ScanErrorKind::kDataCrc, "payload CRC mismatch (stored " + Hex(stored) + ", computed " + Hex(computed) +
                                          ") in the " + std::to_string(length) + " payload bytes at byte " +
                                          std::to_string(options.baseOffset + pos + kHeaderBytes));
        break;
      }
    }
    result.payloadOffsets.push_back(options.baseOffset + pos + kHeaderBytes);
    result.payloadLengths.push_back(length);
    pos += kHeaderBytes + length + kFooterBytes;
    index++;
  }
  result.consumed = pos;
  return result;
}

const char* ScanErrorCode(ScanErrorKind kind) {
  switch (kind) {
    case ScanErrorKind::kTruncated:
      return "ERR_TFRECORD_TRUNCATED";
    case ScanErrorKind::kLengthCrc:
    case ScanErrorKind::kDataCrc:
      return "ERR_TFRECORD_CRC";
    case ScanErrorKind::kIo:
    case ScanErrorKind::kOpen:
      return "ERR_TFRECORD_IO";
    case ScanErrorKind::kNone:
      break;
  }
  return "ERR_TFRECORD";
}

std::string DescribeScanError(const ScanError& error, const std::string& file) {
  std::ostringstream out;
  if (error.kind == ScanErrorKind::kOpen) {
    out << (file.empty() ? "TFRecord file" : file) << ": " << error.detail << ". Check the path and its permissions.";
    return out.str();
  }
  out << (file.empty() ? "TFRecord data" : file) << ": record " << error.recordIndex << " at byte " << error.offset
      << ": " << error.detail << ". ";
  switch (error.kind) {
    case ScanErrorKind::kTruncated:
      out << "The file is incomplete (interrupted download or copy?): fetch it again.";
      break;
    case ScanErrorKind::kLengthCrc:
    case ScanErrorKind::kDataCrc:
      out << "The file is corrupt: fetch it again (`melanoma inspect FOLDER` lists every corrupt file; the API's "
             "verifyCrc: false reads past the check).";
      break;
    default:
      out << "Check that the file is readable.";
  }
  return out.str();
}

void FrameRecord(const uint8_t* payload, uint64_t n, std::vector<uint8_t>* out) {
  uint8_t header[kHeaderBytes];
  for (int i = 0; i < 8; i++) header[i] = uint8_t(n >> (8 * i));
  StoreU32(header + 8, MaskCrc(Crc32c(0, header, 8)));
  out->insert(out->end(), header, header + kHeaderBytes);
  out->insert(out->end(), payload, payload + n);
  uint8_t footer[kFooterBytes];
  StoreU32(footer, MaskCrc(Crc32c(0, payload, n)));
  out->insert(out->end(), footer, footer + kFooterBytes);
}

}  // namespace io
