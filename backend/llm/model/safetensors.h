// Read-only access to safetensors files through mmap: one file, or a sharded checkpoint described
// by model.safetensors.index.json.
//
// Format (safetensors v0): u64 little-endian header length N, N bytes of JSON
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the data; offsets are relative to the first data byte. Opening a file validates every entry
// (known dtype, byte count = numel * element size, offsets inside the file) so that a truncated or
// corrupt file fails with a Status naming the tensor, never with a crash on first access.
//
// Ownership: TensorViews point into memory mapped by a MappedFile; they are valid while the
// SafetensorsFile / TensorStore that produced them (which shares ownership of the mappings) lives.
// Thread-safety: all objects are immutable after open(); concurrent reads are safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/kernels.h"

namespace ferry::llm {

// A read-only private mapping of a whole file.
class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::filesystem::path path_;
};

// One tensor inside a mapped file.
struct TensorView {
  std::string dtype_name;            // as written in the file: "BF16", "F32", "I64", ...
  bool dtype_supported = false;      // true for F32, F16, BF16 (then `dtype` is meaningful)
  kernels::DType dtype = kernels::DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;        // first element, little-endian, row-major
  size_t num_bytes = 0;

  int64_t numel() const;
};

std::string shape_to_string(const std::vector<int64_t>& shape);

class SafetensorsFile {
 public:
  // Maps and validates the file. Errors: NotFound (cannot open), InvalidArgument (bad header, bad
  // entry, data outside the file: the message names the file and tensor).
  static Result<SafetensorsFile> open(const std::filesystem::path& path);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  std::map<std::string, TensorView> tensors_;
};

// All tensors of a model folder: model.safetensors.index.json (sharded) when present, otherwise
// model.safetensors, otherwise every *.safetensors file in the folder.
class TensorStore {
 public:
  static Result<TensorStore> open_dir(const std::filesystem::path& model_dir);
  // From explicit files (tests, unusual layouts). Duplicate names across files are an error.
  static Result<TensorStore> open_files(const std::vector<std::filesystem::path>& files);

  const TensorView* find(const std::string& name) const;
  size_t size() const { return tensors_.size(); }

 private:
  std::vector<SafetensorsFile> files_;  // keep the mappings alive
  std::map<std::string, TensorView> tensors_;
};

}  // namespace ferry::llm
