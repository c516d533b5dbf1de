// The architecture tables each file in architectures/ defines; registry.cc lists them all.
#pragma once

#include "backend/llm/model/architecture.h"

namespace ferry::llm {

extern const ArchitectureInfo kLlamaArchitectures[4];  // llama.cc: Llama, Mistral, Qwen2, Qwen3

}  // namespace ferry::llm
