// The deployment files checked offline (no Docker engine or cluster is at hand to run them):
// yamllint on compose.yaml and deploy/, `promtool check config` on the Prometheus config, the
// Grafana provisioning against compose.yaml, the Dockerfiles' build steps (scripts/setup
// --build-only, scripts/package) and their runtime packages against the libraries the built binaries
// link, every ferry-server flag the files pass against `ferry-server --help`, and the Kubernetes and
// KServe manifests through tests/web/manifests_test.mjs. Each check that needs a tool skips, saying
// so, without it.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "tests/integration/server_process.h"
#include "tests/host/test_util.h"

namespace ferry::testing {
namespace {

namespace fs = std::filesystem;

std::string source(const std::string& rel) { return (fs::path(source_dir()) / rel).string(); }

bool have(const std::string& tool) { return run_command("command -v " + tool).second == 0; }

std::set<std::string> matches(const std::string& text, const std::string& re, int group = 1) {
  std::set<std::string> out;
  std::regex r(re);
  for (std::sregex_iterator it(text.begin(), text.end(), r), end; it != end; ++it) out.insert((*it)[group].str());
  return out;
}

// The packages of the runtime stage's `apt-get install` (the last one in the file).
std::set<std::string> runtime_packages(const std::string& dockerfile) {
  const std::string text = read_file(source(dockerfile));
  size_t at = text.rfind("apt-get install");
  size_t end = text.find("&&", at);
  std::set<std::string> out;
  if (at == std::string::npos || end == std::string::npos) return out;
  std::istringstream words(text.substr(at, end - at));
  for (std::string w; words >> w;) {
    if (w != "apt-get" && w != "install" && w != "\\" && w[0] != '-') out.insert(w);
  }
  return out;
}

TEST(Deploy, YamlLintAcceptsComposeAndDeploy) {
  if (!have("yamllint")) GTEST_SKIP() << "yamllint not installed (Debian package yamllint; scripts/setup installs it)";
  auto [out, rc] = run_command("cd '" + source_dir() + "' && yamllint -f parsable -c deploy/yamllint.yaml compose.yaml deploy");
  EXPECT_EQ(rc, 0) << out;
  // yamllint found the files (it says nothing about clean ones): a broken one is reported.
  TempDir dir;
  write_file(dir / "bad.yaml", "a: 1\na: 2\n");
  EXPECT_NE(run_command("yamllint -c '" + source("deploy/yamllint.yaml") + "' '" + dir / "bad.yaml" + "'").second, 0);
}

TEST(Deploy, PrometheusConfigIsValidAndScrapesTheMetricsPort) {
  const std::string config = read_file(source("deploy/prometheus/prometheus.yml"));
  EXPECT_NE(config.find("ferry:8002"), std::string::npos) << config;
  EXPECT_NE(read_file(source("Dockerfile")).find("\"--metrics-port\", \"8002\""), std::string::npos);
  if (!have("promtool")) GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  auto [out, rc] = run_command("promtool check config '" + source("deploy/prometheus/prometheus.yml") + "'");
  EXPECT_EQ(rc, 0) << out;
}

TEST(Deploy, GrafanaIsProvisionedWithTheDashboard) {
  const std::string compose = read_file(source("compose.yaml"));
  const std::string provider = read_file(source("deploy/grafana/provisioning/dashboards/ferry.yaml"));
  const std::string datasource = read_file(source("deploy/grafana/provisioning/datasources/prometheus.yaml"));
  EXPECT_NE(compose.find("./docs/grafana-dashboard.json:/var/lib/grafana/dashboards/ferry.json"), std::string::npos);
  EXPECT_NE(compose.find("./deploy/grafana/provisioning:/etc/grafana/provisioning"), std::string::npos);
  EXPECT_NE(provider.find("path: /var/lib/grafana/dashboards"), std::string::npos) << provider;
  EXPECT_NE(datasource.find("url: http://prometheus:9090"), std::string::npos) << datasource;
  EXPECT_NE(compose.find("\n  prometheus:"), std::string::npos);
  EXPECT_NE(compose.find("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml"), std::string::npos);
  // The dashboard picks its data source through a variable of type prometheus, which the
  // provisioned default data source satisfies.
  const std::string dashboard = read_file(source("docs/grafana-dashboard.json"));
  EXPECT_NE(dashboard.find("\"type\": \"datasource\""), std::string::npos);
  EXPECT_NE(dashboard.find("\"query\": \"prometheus\""), std::string::npos);
}

TEST(Deploy, DockerfilesBuildWithTheScriptsAndRunAsNonRoot) {
  for (const char* name : {"Dockerfile", "Dockerfile.cuda"}) {
    SCOPED_TRACE(name);
    const std::string text = read_file(source(name));
    EXPECT_NE(text.find("RUN scripts/setup --build-only"), std::string::npos);
    EXPECT_NE(text.find("scripts/package /opt/ferry"), std::string::npos);
    EXPECT_NE(text.find("COPY model_repository /models"), std::string::npos);
    EXPECT_NE(text.find("\"--model-repository\", \"/models\""), std::string::npos);
    EXPECT_NE(text.find("STOPSIGNAL SIGTERM"), std::string::npos);
    EXPECT_NE(text.find("http://127.0.0.1:8002/v2/health/ready"), std::string::npos);
    std::smatch user;
    ASSERT_TRUE(std::regex_search(text, user, std::regex(R"(\nUSER ([0-9]+))")));
    EXPECT_NE(user[1].str(), "0");
  }
  EXPECT_NE(read_file(source("Dockerfile")).find("FROM debian:bookworm AS build"), std::string::npos);
  EXPECT_NE(read_file(source("Dockerfile.cuda")).find("FROM nvidia/cuda:"), std::string::npos);
  EXPECT_NE(read_file(source("Dockerfile.cuda")).find("FERRY_CUDA=ON"), std::string::npos);
  // scripts/package builds and installs what the image runs.
  const std::string package = read_file(source("scripts/package"));
  EXPECT_NE(package.find("--target ferry-server ferry_echo ferry_llm"), std::string::npos);
  EXPECT_NE(package.find("\"$prefix/bin/\""), std::string::npos);
  EXPECT_NE(package.find("\"$prefix/backends/\""), std::string::npos);
  // scripts/setup --build-only installs the build packages, not the test ones.
  auto [dry, rc] = run_command("sed -n '/^build_packages=(/,/^)/p' '" + source("scripts/setup") + "'");
  ASSERT_EQ(rc, 0);
  for (const char* p : {"cmake", "ninja-build", "libcivetweb-dev", "libjsoncpp-dev", "libzmq3-dev", "cppzmq-dev"}) {
    EXPECT_NE(dry.find(p), std::string::npos) << p << " is not among scripts/setup's build packages";
  }
  EXPECT_EQ(dry.find("chromium"), std::string::npos);
}

TEST(Deploy, RuntimeImagesHaveEveryLibraryTheBinariesLink) {
  if (!have("dpkg") || !have("ldd") || !have("objdump")) GTEST_SKIP() << "dpkg, ldd or objdump missing";
  const std::set<std::string> packages = runtime_packages("Dockerfile");
  ASSERT_GT(packages.size(), 3u);
  std::vector<std::string> binaries = {build_dir() + "/host/ferry-server", build_dir() + "/backends/libferry_echo.so",
                                       build_dir() + "/backends/libferry_llm.so"};
  for (const auto& binary : binaries) {
    ASSERT_TRUE(fs::exists(binary)) << binary;
    auto [needed, rc] = run_command("objdump -p '" + binary + "' | awk '/NEEDED/ {print $2}'");
    ASSERT_EQ(rc, 0) << needed;
    auto [resolved, ldd_rc] = run_command("ldd '" + binary + "'");
    std::istringstream names(needed);
    for (std::string lib; names >> lib;) {
      if (lib.rfind("ld-linux", 0) == 0) continue;  // the dynamic loader, libc6's
      std::smatch m;
      ASSERT_TRUE(std::regex_search(resolved, m, std::regex(std::regex_replace(lib, std::regex(R"([.+])"), R"(\$&)") +
                                                            R"( => (\S+))")))
          << lib << " of " << binary << " is not resolved:\n" << resolved;
      // Debian's files are under /usr (merged /usr); dpkg knows them by either path.
      const std::string path = fs::weakly_canonical(m[1].str()).string();
      const std::string other = path.rfind("/usr/", 0) == 0 ? path.substr(4) : "/usr" + path;
      auto [owner, dpkg_rc] = run_command("dpkg -S '" + path + "' 2>/dev/null || dpkg -S '" + other + "'");
      ASSERT_EQ(dpkg_rc, 0) << lib << ": " << owner;
      const std::string package = owner.substr(0, owner.find_first_of(":"));
      if (package == "libc6") continue;  // in every image
      EXPECT_TRUE(packages.count(package)) << binary << " links " << lib << " from " << package
                                           << ", which the Dockerfile's runtime stage does not install";
    }
  }
  // The CUDA image installs the same list, with Ubuntu 22.04's ICU.
  std::set<std::string> cuda = runtime_packages("Dockerfile.cuda");
  if (cuda.erase("libicu70")) cuda.insert("libicu72");
  EXPECT_EQ(cuda, packages);
}

TEST(Deploy, EveryFerryFlagTheFilesPassExists) {
  auto [help, rc] = run_command(build_dir() + "/host/ferry-server --help");
  ASSERT_EQ(rc, 0) << help;
  const auto known = matches(help, R"((--[a-z][a-z0-9-]*))");
  int checked = 0;
  // Dockerfile CMD items ("--flag") and manifest args (- --flag=value).
  for (const char* file : {"Dockerfile", "Dockerfile.cuda"}) {
    for (const auto& flag : matches(read_file(source(file)), R"re("(--[a-z][a-z0-9-]*)")re")) {
      ++checked;
      EXPECT_TRUE(known.count(flag)) << file << " passes " << flag << ", which ferry-server --help does not list";
    }
  }
  for (const char* file : {"deploy/kubernetes/deployment.yaml", "deploy/kserve/cluster-serving-runtime.yaml"}) {
    for (const auto& flag : matches(read_file(source(file)), R"(- (--[a-z][a-z0-9-]*)=)")) {
      ++checked;
      EXPECT_TRUE(known.count(flag)) << file << " passes " << flag << ", which ferry-server --help does not list";
    }
  }
  EXPECT_GT(checked, 15);
}

TEST(Deploy, KubernetesAndKServeManifests) {
  if (!have("node")) GTEST_SKIP() << "node not installed (scripts/setup installs nodejs)";
  if (!fs::exists(source("tests/web/node_modules/kubernetes-models"))) {
    GTEST_SKIP() << "kubernetes-models not installed in tests/web (scripts/setup runs npm ci there)";
  }
  auto [out, rc] = run_command("node '" + source("tests/web/manifests_test.mjs") + "' '" + source_dir() + "'");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("all checks passed"), std::string::npos) << out;
  std::printf("%s", out.c_str());
}

}  // namespace
}  // namespace ferry::testing
