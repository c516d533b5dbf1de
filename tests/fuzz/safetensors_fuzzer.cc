// Fuzzes safetensors parsing: the input is a whole .safetensors file (u64 header length, JSON
// header, data), written to a scratch file and opened with SafetensorsFile::open, which maps it and
// validates every entry. Bit 0 of the input's last byte also opens it as the one shard of a
// TensorStore (open_files), which checks names across files.
//
// Invariants checked on an accepted file: every tensor's byte count equals numel * element size
// for the supported dtypes, lies inside the file, and can be read to its last byte.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "backend/llm/model/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path path = ferry::fuzz::scratch_dir() / "model.safetensors";
  ferry::fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));

  auto file = ferry::llm::SafetensorsFile::open(path);
  if (file.ok()) {
    for (const auto& [name, t] : file->tensors()) {
      FUZZ_CHECK(t.num_bytes <= size, "tensor '%s' has %zu bytes in a file of %zu", name.c_str(), t.num_bytes, size);
      if (t.dtype_supported) {
        FUZZ_CHECK(static_cast<uint64_t>(t.numel()) * ferry::kernels::dtype_size(t.dtype) == t.num_bytes,
                   "tensor '%s': numel * element size != byte count", name.c_str());
      }
      FUZZ_CHECK(t.num_bytes == 0 || t.data != nullptr, "tensor '%s' has bytes but no data", name.c_str());
      // Touch every byte: data outside the mapping faults here rather than in a kernel later.
      const auto* p = static_cast<const volatile uint8_t*>(t.data);
      uint8_t sum = 0;
      for (size_t i = 0; i < t.num_bytes; ++i) sum = static_cast<uint8_t>(sum + p[i]);
      (void)sum;
      FUZZ_CHECK(file->find(name) == &t, "find('%s') does not return the entry", name.c_str());
    }
  }
  if (size > 0 && (data[size - 1] & 1)) {
    (void)ferry::llm::TensorStore::open_files({path});
  }
  return 0;
}
