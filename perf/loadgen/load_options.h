// Command-line options of ferry-loadgen and their parser. Plain data; no I/O beyond the usage text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace ferry::loadgen {

enum class Protocol { kHttp, kZmq };

struct LoadOptions {
  Protocol protocol = Protocol::kHttp;
  std::string url = "http://127.0.0.1:8000";        // HTTP base URL
  std::string endpoint = "tcp://127.0.0.1:5555";    // ZeroMQ endpoint
  std::string model = "echo";
  std::string input_name = "text_input";            // the BYTES input the echo model returns
  std::string path;                                 // HTTP only: a bare GET path instead of infer
  uint64_t num_requests = 1000;                     // timed requests
  uint64_t num_warmup = 100;                        // untimed requests first, same concurrency
  int concurrency = 1;                              // requests in flight at once
  int num_zmq_sockets = 0;                          // DEALER sockets (one thread each); 0: min(C, 4)
  size_t payload_bytes = 16;                        // size of the one string sent as the input
  std::string prompt;                               // the input string instead of payload_bytes of 'x'
  std::string parameters_json;                      // ZeroMQ: the request's "parameters" object
  bool stream = false;                              // ZeroMQ: stream (every response, not only FINAL)
  int timeout_ms = 10000;                           // ZeroMQ: give up on a socket silent this long
  std::string label;                                // names the run in the progress line and JSON
  std::string json_out;                             // write the summary here as JSON
  bool progress = true;
};

// Fills `options` from argv. Returns InvalidArgument naming the flag on a bad or unknown flag, and
// Cancelled after printing the usage text for --help.
Status parse_options(int argc, char** argv, LoadOptions* options);

const char* protocol_name(Protocol p);

}  // namespace ferry::loadgen
