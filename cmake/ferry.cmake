# Shared CMake helpers for ferry.

# Where the reference data that no one here wrote lives (tokenizer vectors, the trained test model).
# Tests read FERRY_TESTDATA from the environment first; this is the default that CTest passes.
get_filename_component(FERRY_TESTDATA_DEFAULT "${CMAKE_SOURCE_DIR}/../shared/testdata" ABSOLUTE)
set(FERRY_TESTDATA "${FERRY_TESTDATA_DEFAULT}" CACHE PATH "Reference test data directory")

# ferry_add_test(NAME <name> SOURCES <files...> [LIBS <targets...>] [LABELS <labels...>] [TIMEOUT <s>])
# Builds one GoogleTest executable and registers its tests with CTest. Each test binary knows the
# build, source and test-data directories as compile definitions (FERRY_TEST_BINARY_DIR,
# FERRY_TEST_SOURCE_DIR, FERRY_TEST_TESTDATA); the environment variables FERRY_BINARY_DIR,
# FERRY_SOURCE_DIR and FERRY_TESTDATA override them when set. (Definitions, not CTest ENVIRONMENT:
# gtest_discover_tests splits list-valued properties.)
function(ferry_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main Threads::Threads)
  target_compile_definitions(${T_NAME} PRIVATE
    FERRY_TEST_BINARY_DIR="${CMAKE_BINARY_DIR}"
    FERRY_TEST_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    FERRY_TEST_TESTDATA="${FERRY_TESTDATA}")
  set_target_properties(${T_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  gtest_discover_tests(${T_NAME} DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS ${T_LABELS})
endfunction()

# ferry_add_backend(<name> SOURCES <files...> [LIBS <targets...>])
# Builds libferry_<name>.so into the backend folder. Only the ferry_* entry points are exported
# (linker version script), so backends never clash with each other or with the host.
function(ferry_add_backend name)
  cmake_parse_arguments(B "" "" "SOURCES;LIBS" ${ARGN})
  add_library(ferry_${name} MODULE ${B_SOURCES})
  target_link_libraries(ferry_${name} PRIVATE ferry_abi ${B_LIBS})
  set_target_properties(ferry_${name} PROPERTIES
    PREFIX "lib"
    LIBRARY_OUTPUT_DIRECTORY ${FERRY_BACKEND_OUTPUT_DIR}
    CXX_VISIBILITY_PRESET hidden
    C_VISIBILITY_PRESET hidden)
  target_link_options(ferry_${name} PRIVATE
    "LINKER:--version-script=${CMAKE_SOURCE_DIR}/cmake/backend.map" "LINKER:--no-undefined")
endfunction()

# ferry_enable_sanitizer(<kind>)
# Instruments every C and C++ target defined after the call (the whole project when called from the
# top-level CMakeLists). <kind>: "address" = ASan + UBSan (any UB aborts: -fno-sanitize-recover),
# "thread" = TSan, "" = nothing. CUDA sources are left alone; sanitizer builds use FERRY_CUDA=OFF.
function(ferry_enable_sanitizer kind)
  if(kind STREQUAL "")
    return()
  elseif(kind STREQUAL "address")
    set(flags -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  elseif(kind STREQUAL "thread")
    set(flags -fsanitize=thread -fno-omit-frame-pointer)
  else()
    message(FATAL_ERROR "FERRY_SANITIZE must be address, thread or empty, not '${kind}'")
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${flags}>")
  add_link_options("$<$<LINK_LANGUAGE:C,CXX>:${flags}>")
  message(STATUS "ferry: sanitizer ${kind} (${flags})")
endfunction()

# ferry_enable_fuzzing()
# Adds libFuzzer coverage instrumentation plus ASan + UBSan to every C and C++ target defined after
# the call, so the libraries the fuzz targets link are instrumented too. The fuzz executables
# themselves add -fsanitize=fuzzer (ferry_add_fuzzer in tests/fuzz). Needs clang.
function(ferry_enable_fuzzing)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FERRY_FUZZ=ON needs clang (e.g. -DCMAKE_CXX_COMPILER=clang++-14)")
  endif()
  set(flags -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  add_compile_options("$<$<COMPILE_LANGUAGE:C,CXX>:${flags}>")
  add_link_options("$<$<LINK_LANGUAGE:C,CXX>:-fsanitize=address,undefined>")
  message(STATUS "ferry: libFuzzer targets with ASan + UBSan")
endfunction()
