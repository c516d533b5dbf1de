// The architecture tables each file in architectures/ defines; registry.cc lists them all.
#pragma once

#include "backend/llm/model/architecture.h"

namespace ferry::llm {

extern const ArchitectureInfo kLlamaArchitectures[4];  // llama.cc: Llama, Mistral, Qwen2, Qwen3
extern const ArchitectureInfo kPhi3Architectures[1];   // phi3.cc: Phi-3, Phi-3.5
extern const ArchitectureInfo kGemmaArchitectures[2];  // gemma.cc: Gemma 2, Gemma 3 (text)

}  // namespace ferry::llm
