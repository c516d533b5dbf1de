#include "backend/llm/grammar/grammar.h"
