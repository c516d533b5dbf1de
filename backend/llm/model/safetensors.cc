#include "backend/llm/model/safetensors.h"

#include <fcntl.h>
#include <json/json.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "backend/llm/model/model_config.h"
#include "common/json_parse.h"

namespace ferry::llm {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20;  // a header over 100 MB is corrupt, not big

// Element size of every dtype safetensors defines; 0 for unknown names.
size_t safetensors_elem_size(const std::string& dtype) {
  static const std::map<std::string, size_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2},  {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8}};
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

Status bad(const std::filesystem::path& path, const std::string& what) {
  return Status::InvalidArgument("safetensors " + path.string() + ": " + what);
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Result<std::shared_ptr<MappedFile>> MappedFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::NotFound("cannot open " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::Internal("cannot stat " + path.string() + ": " + std::strerror(err));
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status::Internal("cannot mmap " + path.string() + ": " + std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid without the descriptor
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

Result<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped.ok()) return mapped.status();
  SafetensorsFile out;
  out.file_ = std::move(mapped).value();
  const uint8_t* base = out.file_->data();
  const size_t size = out.file_->size();
  if (size < 8) return bad(path, "file is " + std::to_string(size) + " bytes, too short for a header");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian
  if (header_len > kMaxHeaderBytes || header_len > size - 8) {
    return bad(path, "header length " + std::to_string(header_len) + " exceeds the file size " +
                         std::to_string(size) + " (truncated or not a safetensors file)");
  }
  const char* header = reinterpret_cast<const char*>(base + 8);
  auto parsed = parse_json_text(std::string_view(header, header_len), kJsonFileOptions);
  if (!parsed.ok() || !parsed->isObject()) {
    return bad(path, "header is not a JSON object: " + (parsed.ok() ? std::string() : parsed.status().message()));
  }
  const Json::Value& root = parsed.value();
  const uint8_t* data = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (const std::string& name : root.getMemberNames()) {
    if (name == "__metadata__") continue;
    const Json::Value& e = root[name];
    const std::string where = "tensor '" + name + "'";
    if (!e.isObject() || !e["dtype"].isString() || !e["shape"].isArray() || !e["data_offsets"].isArray() ||
        e["data_offsets"].size() != 2) {
      return bad(path, where + ": entry needs dtype, shape and data_offsets [begin, end]");
    }
    TensorView v;
    v.dtype_name = e["dtype"].asString();
    const size_t elem = safetensors_elem_size(v.dtype_name);
    if (elem == 0) return bad(path, where + ": unknown dtype '" + v.dtype_name + "'");
    if (v.dtype_name == "F32") {
      v.dtype_supported = true;
      v.dtype = kernels::DType::kF32;
    } else if (v.dtype_name == "F16") {
      v.dtype_supported = true;
      v.dtype = kernels::DType::kF16;
    } else if (v.dtype_name == "BF16") {
      v.dtype_supported = true;
      v.dtype = kernels::DType::kBF16;
    }
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      // isInt64, not isIntegral: asInt64() throws on integral values beyond int64.
      if (!d.isInt64() || d.asInt64() < 0 || d.asInt64() > (int64_t{1} << 40)) {
        return bad(path, where + ": shape entries must be non-negative integers");
      }
      v.shape.push_back(d.asInt64());
      // Each dim is <= 2^40, but their product can still wrap (e.g. [2^32, 2^32] -> 0 elements).
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d.asInt64()), &numel) || numel > (uint64_t{1} << 60)) {
        return bad(path, where + ": shape " + shape_to_string(v.shape) + " has too many elements");
      }
    }
    const Json::Value& b = e["data_offsets"][0];
    const Json::Value& en = e["data_offsets"][1];
    if (!b.isInt64() || !en.isInt64() || b.asInt64() < 0 || en.asInt64() < b.asInt64()) {
      return bad(path, where + ": data_offsets must be integers with 0 <= begin <= end");
    }
    const uint64_t begin = b.asUInt64(), end = en.asUInt64();
    if (end - begin != numel * elem) {
      return bad(path, where + ": data_offsets span " + std::to_string(end - begin) + " bytes but shape " +
                           shape_to_string(v.shape) + " of " + v.dtype_name + " needs " +
                           std::to_string(numel * elem));
    }
    if (end > data_size) {
      return bad(path, where + ": data ends at byte " + std::to_string(end) + " but the file has only " +
                           std::to_string(data_size) + " data bytes (truncated file?)");
    }
    v.data = data + begin;
    v.num_bytes = static_cast<size_t>(end - begin);
    out.tensors_.emplace(name, std::move(v));
  }
  return out;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Result<TensorStore> TensorStore::open_files(const std::vector<std::filesystem::path>& files) {
  TensorStore store;
  for (const auto& path : files) {
    auto file = SafetensorsFile::open(path);
    if (!file.ok()) return file.status();
    for (const auto& [name, view] : file->tensors()) {
      if (!store.tensors_.emplace(name, view).second) {
        return Status::InvalidArgument("tensor '" + name + "' appears in more than one file (" + path.string() + ")");
      }
    }
    store.files_.push_back(std::move(file).value());
  }
  return store;
}

Result<TensorStore> TensorStore::open_dir(const std::filesystem::path& dir) {
  const auto index_path = dir / "model.safetensors.index.json";
  if (std::filesystem::exists(index_path)) {
    auto text = read_text_file(index_path);
    if (!text.ok()) return text.status();
    auto parsed = parse_json_text(text.value(), kJsonFileOptions);
    if (!parsed.ok() || !parsed->isObject() || !(*parsed)["weight_map"].isObject()) {
      return Status::InvalidArgument(index_path.string() + ": needs an object 'weight_map' {tensor: file}");
    }
    const Json::Value& root = parsed.value();
    std::set<std::string> shard_names;
    const Json::Value& map = root["weight_map"];
    for (const std::string& name : map.getMemberNames()) {
      const std::string shard = map[name].isString() ? map[name].asString() : "";
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "..") {
        return Status::InvalidArgument(index_path.string() + ": weight_map['" + name + "'] must be a file name in the folder");
      }
      shard_names.insert(shard);
    }
    std::vector<std::filesystem::path> files;
    for (const auto& s : shard_names) files.push_back(dir / s);
    auto store = open_files(files);
    if (!store.ok()) return store.status();
    for (const std::string& name : map.getMemberNames()) {
      if (store->find(name) == nullptr) {
        return Status::InvalidArgument(index_path.string() + ": tensor '" + name + "' is not in its shard '" +
                                       map[name].asString() + "'");
      }
    }
    return store;
  }
  if (std::filesystem::exists(dir / "model.safetensors")) return open_files({dir / "model.safetensors"});
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  }
  if (files.empty()) return Status::NotFound("no *.safetensors weights in " + dir.string());
  std::sort(files.begin(), files.end());
  return open_files(files);
}

const TensorView* TensorStore::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace ferry::llm
