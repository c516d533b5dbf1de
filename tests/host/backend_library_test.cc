// The ABI handshake: major mismatch, newer minor and missing symbols are refused with messages
// naming the versions or the symbol; optional functions are gated by the backend's minor.
#include "host/backend_library.h"

#include <gtest/gtest.h>

#include <cstddef>

#include "host/host_api.h"
#include "tests/host/test_util.h"

namespace ferry::host {
namespace {

std::string test_backend(const std::string& name) {
  return testing::binary_dir() + "/test_backends/libferry_" + name + ".so";
}

class Handshake : public ::testing::Test {
 protected:
  MetricsRegistry metrics_;
  HostApi api_{&metrics_};
};

TEST_F(Handshake, CurrentVersionLoadsAndFindsOptionalHealth) {
  auto lib = BackendLibrary::load("current", test_backend("current"), api_.get());
  ASSERT_TRUE(lib.ok()) << lib.status().to_string();
  EXPECT_EQ(lib.value()->abi_major(), static_cast<uint32_t>(FERRY_ABI_VERSION_MAJOR));
  EXPECT_NE(lib.value()->model_health, nullptr);
}

TEST_F(Handshake, OlderMinorLoadsButItsNewerOptionalFunctionsAreNotUsed) {
  auto lib = BackendLibrary::load("old_minor", test_backend("old_minor"), api_.get());
  ASSERT_TRUE(lib.ok()) << lib.status().to_string();
  EXPECT_EQ(lib.value()->abi_minor(), 0u);
  // The library exports ferry_model_health, but a 1.0 backend cannot mean it: the host ignores it.
  EXPECT_EQ(lib.value()->model_health, nullptr);
}

TEST_F(Handshake, PreviousMinorLoadsWithItsHealthCheck) {
  // Built against 1.1, before ABI 1.2 added loading progress to the host table: a 1.2 host loads it
  // and still uses the health check that 1.1 introduced.
  auto lib = BackendLibrary::load("minor_1", test_backend("minor_1"), api_.get());
  ASSERT_TRUE(lib.ok()) << lib.status().to_string();
  EXPECT_EQ(lib.value()->abi_minor(), 1u);
  EXPECT_NE(lib.value()->model_health, nullptr);
}

TEST_F(Handshake, HostTableOffersLoadProgressSince1_2) {
  const ferry_host_api* api = api_.get();
  EXPECT_GE(api->abi_minor, 2u);
  EXPECT_GE(api->struct_size, offsetof(ferry_host_api, load_progress) + sizeof(api->load_progress));
  ASSERT_NE(api->load_progress, nullptr);
  ferry_load_progress p{};
  p.struct_size = sizeof(p);
  p.stage = "x";
  api->load_progress(nullptr, &p);  // a NULL reporter is ignored, not a crash
}

TEST_F(Handshake, NewerMinorIsRefusedNamingBothVersions) {
  auto lib = BackendLibrary::load("future_minor", test_backend("future_minor"), api_.get());
  ASSERT_FALSE(lib.ok());
  std::string host = std::to_string(FERRY_ABI_VERSION_MAJOR) + "." + std::to_string(FERRY_ABI_VERSION_MINOR);
  std::string backend = std::to_string(FERRY_ABI_VERSION_MAJOR) + "." + std::to_string(FERRY_ABI_VERSION_MINOR + 1);
  EXPECT_NE(lib.status().message().find("backend ABI " + backend), std::string::npos) << lib.status().message();
  EXPECT_NE(lib.status().message().find("host ABI " + host), std::string::npos) << lib.status().message();
}

TEST_F(Handshake, OtherMajorIsRefusedNamingBothVersions) {
  auto lib = BackendLibrary::load("wrong_major", test_backend("wrong_major"), api_.get());
  ASSERT_FALSE(lib.ok());
  EXPECT_NE(lib.status().message().find("incompatible major"), std::string::npos) << lib.status().message();
  EXPECT_NE(lib.status().message().find("backend ABI " + std::to_string(FERRY_ABI_VERSION_MAJOR + 1) + ".0"),
            std::string::npos)
      << lib.status().message();
}

TEST_F(Handshake, MissingRequiredSymbolIsRefusedNamingIt) {
  auto lib = BackendLibrary::load("missing_submit", test_backend("missing_submit"), api_.get());
  ASSERT_FALSE(lib.ok());
  EXPECT_NE(lib.status().message().find("missing required symbol 'ferry_model_submit'"), std::string::npos)
      << lib.status().message();
}

TEST_F(Handshake, MissingLibraryIsNotFound) {
  auto lib = BackendLibrary::load("nope", test_backend("does_not_exist"), api_.get());
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().code(), StatusCode::kNotFound);
}

TEST_F(Handshake, ManagerLoadsABackendOnceAndRejectsPathNames) {
  BackendManager manager(testing::binary_dir() + "/backends", api_.get());
  auto a = manager.get("echo");
  auto b = manager.get("echo");
  ASSERT_TRUE(a.ok() && b.ok()) << a.status().to_string();
  EXPECT_EQ(a.value().get(), b.value().get());
  EXPECT_EQ(manager.get("../test_backends/current").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(manager.get("").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::host
