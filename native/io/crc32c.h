// CRC32C (Castagnoli), as TFRecord framing uses it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace io {

// Continue a CRC: pass the previous result as `crc` (0 to start).
uint32_t Crc32cSoftware(uint32_t crc, const uint8_t* data, size_t n);
// Same result via the SSE4.2 crc32 instruction; only call when Crc32cHardwareAvailable().
uint32_t Crc32cHardware(uint32_t crc, const uint8_t* data, size_t n);
bool Crc32cHardwareAvailable();
// Picks the hardware path when the CPU has it (detected once).
uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t n);

// TFRecord stores CRCs masked so that CRCs of data containing CRCs stay well distributed.
inline uint32_t MaskCrc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline uint32_t UnmaskCrc(uint32_t masked) {
  uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

}  // namespace io
