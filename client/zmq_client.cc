#include "client/zmq_client.h"

#include <zmq.h>

#include <memory>

namespace ferry::client {

ZmqClient::ZmqClient() {
  ctx_ = zmq_ctx_new();
  socket_ = zmq_socket(ctx_, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(socket_, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_setsockopt(socket_, ZMQ_RCVHWM, &zero, sizeof(zero));
}

ZmqClient::~ZmqClient() {
  zmq_close(socket_);
  zmq_ctx_term(ctx_);
}

Status ZmqClient::use_curve(const std::string& server_public_key) {
  if (!zmq_has("curve")) return Status::Unimplemented("this libzmq was built without CURVE support");
  char public_key[41], secret_key[41];
  if (zmq_curve_keypair(public_key, secret_key) != 0) {
    return Status::Internal(std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
  }
  if (server_public_key.size() != 40 ||
      zmq_setsockopt(socket_, ZMQ_CURVE_SERVERKEY, server_public_key.c_str(), server_public_key.size()) != 0) {
    return Status::InvalidArgument("the server public key must be 40 Z85 characters");
  }
  zmq_setsockopt(socket_, ZMQ_CURVE_PUBLICKEY, public_key, 40);
  zmq_setsockopt(socket_, ZMQ_CURVE_SECRETKEY, secret_key, 40);
  return Status::Ok();
}

Status ZmqClient::connect(const std::string& endpoint) {
  if (zmq_connect(socket_, endpoint.c_str()) != 0) {
    return Status::Unavailable("cannot connect to " + endpoint + ": " + zmq_strerror(zmq_errno()));
  }
  return Status::Ok();
}

Status ZmqClient::send_raw(const std::string& payload) {
  if (zmq_send(socket_, payload.data(), payload.size(), 0) < 0) {
    return Status::Unavailable(std::string("send failed: ") + zmq_strerror(zmq_errno()));
  }
  return Status::Ok();
}

Status ZmqClient::send(const Json::Value& message) {
  Json::StreamWriterBuilder w;
  w["indentation"] = "";
  if (api_key_.empty()) return send_raw(Json::writeString(w, message));
  Json::Value with_key = message;
  with_key["api_key"] = api_key_;
  return send_raw(Json::writeString(w, with_key));
}

std::optional<Json::Value> ZmqClient::receive(std::chrono::milliseconds timeout) {
  zmq_pollitem_t item = {socket_, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&item, 1, static_cast<long>(timeout.count())) <= 0) return std::nullopt;
  zmq_msg_t msg;
  zmq_msg_init(&msg);
  if (zmq_msg_recv(&msg, socket_, 0) < 0) {
    zmq_msg_close(&msg);
    return std::nullopt;
  }
  std::string payload(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
  bool more = zmq_msg_more(&msg);
  zmq_msg_close(&msg);
  while (more) {  // the server answers with the payload only; tolerate extra frames
    zmq_msg_init(&msg);
    zmq_msg_recv(&msg, socket_, 0);
    payload.assign(static_cast<const char*>(zmq_msg_data(&msg)), zmq_msg_size(&msg));
    more = zmq_msg_more(&msg);
    zmq_msg_close(&msg);
  }
  Json::CharReaderBuilder b;
  std::unique_ptr<Json::CharReader> reader(b.newCharReader());
  Json::Value v;
  std::string errs;
  if (!reader->parse(payload.data(), payload.data() + payload.size(), &v, &errs)) {
    Json::Value bad;
    bad["client_error"] = "unparseable response: " + errs;
    return bad;
  }
  return v;
}

std::optional<std::string> ZmqClient::receive_text(std::chrono::milliseconds timeout, Json::Value* last) {
  std::string text;
  for (;;) {
    std::optional<Json::Value> r = receive(timeout);
    if (last != nullptr) *last = r.value_or(Json::Value());
    if (!r || r->isMember("error") || r->isMember("client_error")) return std::nullopt;
    for (const Json::Value& o : (*r)["outputs"]) {
      if (o["name"] == "text_output") text += o["data"][0].asString();
    }
    if ((*r)["final"].asBool()) return text;
  }
}

Json::Value ZmqClient::infer_message(const std::string& id, const std::string& model, const Json::Value& inputs,
                                     const Json::Value& parameters, bool stream) {
  Json::Value m;
  m["type"] = "infer";
  m["id"] = id;
  m["model"] = model;
  m["inputs"] = inputs;
  if (!parameters.isNull()) m["parameters"] = parameters;
  m["stream"] = stream;
  return m;
}

Json::Value ZmqClient::cancel_message(const std::string& id) {
  Json::Value m;
  m["type"] = "cancel";
  m["id"] = id;
  return m;
}

}  // namespace ferry::client
