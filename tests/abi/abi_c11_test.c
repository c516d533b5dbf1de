/* Proves that include/ferry/ferry.h is valid C11 on its own (compiled with -std=c11 -pedantic) and
 * that its structs start with struct_size, as the header's conventions promise. */
#include <stddef.h>
#include <stdio.h>

#include "ferry/ferry.h"

#define CHECK(cond)                                  \
  do {                                               \
    if (!(cond)) {                                   \
      fprintf(stderr, "failed: %s\n", #cond);        \
      return 1;                                      \
    }                                                \
  } while (0)

int main(void) {
  CHECK(offsetof(ferry_error, struct_size) == 0);
  CHECK(offsetof(ferry_tensor, struct_size) == 0);
  CHECK(offsetof(ferry_request, struct_size) == 0);
  CHECK(offsetof(ferry_response, struct_size) == 0);
  CHECK(offsetof(ferry_host_api, struct_size) == 0);
  CHECK(offsetof(ferry_model_desc, struct_size) == 0);
  CHECK(offsetof(ferry_load_progress, struct_size) == 0);
  /* 1.2 additions sit at the end of the structs they extend, so 1.1 readers are unaffected. */
  CHECK(offsetof(ferry_host_api, load_progress) > offsetof(ferry_host_api, respond));
  CHECK(offsetof(ferry_model_desc, load_reporter) > offsetof(ferry_model_desc, config_path));
  CHECK(FERRY_ABI_VERSION_MINOR >= 2);
  CHECK(FERRY_ABI_VERSION_MAJOR >= 1);
  CHECK(FERRY_ERROR_CODE_OK == 0);
  CHECK(sizeof(((ferry_error*)0)->message) == FERRY_ERROR_MESSAGE_CAPACITY);
  printf("ferry.h compiles as C11 (ABI %d.%d)\n", FERRY_ABI_VERSION_MAJOR, FERRY_ABI_VERSION_MINOR);
  return 0;
}
