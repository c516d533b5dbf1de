// Test helper: writes small safetensors files (valid or deliberately broken) into a temp dir.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ferry::llm::testing {

struct FakeTensor {
  std::string name;
  std::string dtype;  // "F32", "BF16", "I64", ...
  std::vector<int64_t> shape;
  size_t elem_size = 4;
};

inline std::string shape_json(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

// Writes the tensors back to back, filled with a recognisable non-zero pattern (value = index+1 for
// F32). Returns the header text it wrote. `truncate_bytes` drops that many bytes from the end.
inline std::string write_safetensors(const std::filesystem::path& path, const std::vector<FakeTensor>& tensors,
                                     size_t truncate_bytes = 0) {
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  std::vector<char> data;
  for (const auto& t : tensors) {
    size_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<size_t>(d);
    const size_t begin = data.size();
    data.resize(begin + n * t.elem_size);
    for (size_t i = 0; i < n; ++i) {
      if (t.dtype == "F32") {
        const float v = static_cast<float>(i + 1) * 0.25f;
        std::memcpy(&data[begin + i * 4], &v, 4);
      } else {
        for (size_t b = 0; b < t.elem_size; ++b) data[begin + i * t.elem_size + b] = static_cast<char>(i + b + 1);
      }
    }
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + shape_json(t.shape) +
              ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = header.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  std::string all(len_bytes, 8);
  all += header;
  all.append(data.begin(), data.end());
  all.resize(all.size() - truncate_bytes);
  out.write(all.data(), static_cast<std::streamsize>(all.size()));
  return header;
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A fresh, empty directory under the system temp dir.
inline std::filesystem::path make_temp_dir(const std::string& tag) {
  std::string tmpl = (std::filesystem::temp_directory_path() / ("ferry_" + tag + "_XXXXXX")).string();
  char* made = ::mkdtemp(tmpl.data());
  return made ? std::filesystem::path(made) : std::filesystem::path();
}

}  // namespace ferry::llm::testing
