#include "backend/llm/scheduler/scheduler_request.h"

namespace ferry::llm {

std::string_view request_status_name(RequestStatus status) {
  switch (status) {
    case RequestStatus::kWaiting: return "waiting";
    case RequestStatus::kRunning: return "running";
    case RequestStatus::kPreempted: return "preempted";
    case RequestStatus::kFinished: return "finished";
  }
  return "?";
}

std::string_view request_finish_reason_name(RequestFinishReason reason) {
  switch (reason) {
    case RequestFinishReason::kNone: return "none";
    case RequestFinishReason::kStop: return "stop";
    case RequestFinishReason::kLength: return "length";
    case RequestFinishReason::kCancelled: return "cancelled";
    case RequestFinishReason::kError: return "error";
    case RequestFinishReason::kTimeout: return "timeout";
    case RequestFinishReason::kRejected: return "rejected";
  }
  return "?";
}

}  // namespace ferry::llm
