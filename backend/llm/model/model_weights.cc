#include "backend/llm/model/model_weights.h"

#include "backend/llm/model/architecture.h"

#include <cmath>
#include <vector>

namespace ferry::llm {

int64_t WeightSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string layer_tensor_name(int64_t layer, const std::string& suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

std::vector<WeightSpec> plan_weights(const ModelConfig& c) {
  const ArchitectureInfo* arch = find_architecture(c.architecture_name);
  FERRY_CHECK(arch != nullptr);  // parse_model_config admits registered architectures only
  return arch->plan(c);
}

Result<ModelWeights> ModelWeights::load_safetensors(const ModelConfig& config, const std::filesystem::path& model_dir) {
  auto store = TensorStore::open_dir(model_dir);
  if (!store.ok()) return store.status();
  return from_store(config, std::make_shared<const TensorStore>(std::move(store).value()));
}

Result<ModelWeights> ModelWeights::from_store(const ModelConfig& config, std::shared_ptr<const TensorStore> store) {
  ModelWeights w;
  w.format_ = LoadFormat::kSafetensors;
  w.quantization_ = config.quantization;
  w.specs_ = plan_weights(config);
  for (const WeightSpec& spec : w.specs_) {
    if (spec.shape.size() == 2) {
      auto q = find_quantized(*store, config.quantization, spec.name, spec.shape[0], spec.shape[1]);
      if (!q.ok()) return q.status();
      if (q.value()) {
        w.quantized_.emplace(spec.name, *q.value());
        continue;
      }
    }
    const TensorView* v = store->find(spec.name);
    if (v == nullptr) return Status::InvalidArgument("missing tensor '" + spec.name + "'");
    if (!v->dtype_supported) {
      return Status::InvalidArgument("tensor '" + spec.name + "' has dtype " + v->dtype_name +
                                     "; supported: F32, F16, BF16");
    }
    if (v->shape != spec.shape) {
      return Status::InvalidArgument("tensor '" + spec.name + "' has shape " + shape_to_string(v->shape) +
                                     ", expected " + shape_to_string(spec.shape));
    }
  }
  w.store_ = std::move(store);
  return w;
}

ModelWeights ModelWeights::dummy(const ModelConfig& config, uint64_t seed) {
  ModelWeights w;
  w.format_ = LoadFormat::kDummy;
  w.seed_ = seed;
  w.dummy_dtype_ = config.dtype;
  w.specs_ = plan_weights(config);
  return w;
}

const WeightSpec* ModelWeights::spec(const std::string& name) const {
  for (const auto& s : specs_)
    if (s.name == name) return &s;
  return nullptr;
}

int64_t ModelWeights::num_parameters() const {
  int64_t n = 0;
  for (const auto& s : specs_) n += s.numel();
  return n;
}

const TensorView* ModelWeights::view(const std::string& name) const {
  if (format_ != LoadFormat::kSafetensors || spec(name) == nullptr) return nullptr;
  return store_->find(name);
}

const QuantizedTensor* ModelWeights::quantized(const std::string& name) const {
  auto it = quantized_.find(name);
  return it == quantized_.end() ? nullptr : &it->second;
}

namespace {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Dummy values: norm weights near 1, biases small, matrices uniform with variance 1/fan_in (so
// activations keep their scale through the layers and the logits stay finite).
void fill_dummy(const WeightSpec& spec, uint64_t seed, float* dst) {
  uint64_t state = seed ^ fnv1a(spec.name);
  const int64_t n = spec.numel();
  float center = 0.0f, half_width;
  if (ends_with(spec.name, "norm.weight")) {
    center = 1.0f;
    half_width = 0.1f;
  } else if (ends_with(spec.name, ".bias")) {
    half_width = 0.02f;
  } else {
    const double fan_in = static_cast<double>(spec.shape.back());
    half_width = static_cast<float>(std::sqrt(3.0 / fan_in));
  }
  for (int64_t i = 0; i < n; ++i) {
    const double u = static_cast<double>(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    dst[i] = center + half_width * static_cast<float>(2.0 * u - 1.0);
  }
}

}  // namespace

Status ModelWeights::read_f32(const std::string& name, float* dst) const {
  const WeightSpec* s = spec(name);
  if (s == nullptr) return Status::NotFound("tensor '" + name + "' is not part of this model");
  if (format_ == LoadFormat::kDummy) {
    fill_dummy(*s, seed_, dst);
    return Status::Ok();
  }
  if (const QuantizedTensor* q = quantized(name)) {
    const int64_t groups = q->num_groups();
    std::vector<uint8_t> codes(static_cast<size_t>(q->n * q->k));
    std::vector<float> scales(static_cast<size_t>(q->n * groups)), zeros(scales.size());
    unpack_quantized(*q, codes.data(), scales.data(), zeros.data());
    for (int64_t j = 0; j < q->n; ++j) {
      for (int64_t c = 0; c < q->k; ++c) {
        const size_t g = static_cast<size_t>(j * groups + c / q->group_size);
        dst[j * q->k + c] = (static_cast<float>(codes[static_cast<size_t>(j * q->k + c)]) - zeros[g]) * scales[g];
      }
    }
    return Status::Ok();
  }
  const TensorView* v = store_->find(name);
  FERRY_CHECK(v != nullptr);  // checked at load
  kernels::convert_to_f32(dst, v->data, v->dtype, static_cast<size_t>(v->numel()));
  return Status::Ok();
}

}  // namespace ferry::llm
