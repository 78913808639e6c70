// Threads: one h2o event loop owns every connection and every h2o_req_t. A request's body is
// copied and handed to a worker pool, which runs KinesisApi (the broker core may block on an
// fsync; a put completes on a shard writer thread). The answer comes back to the loop as an
// h2o_multithread message; only the loop touches h2o. A request whose client went away before
// the answer is noticed through a dispose callback in the request's memory pool, so the answer
// is dropped instead of written to freed memory.
#include "kinesis/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

// h2o's own event loop (libh2o-evloop), not its libuv flavour: the structs differ.
#define H2O_USE_LIBUV 0
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "common/strings.h"
#include "h2o.h"
#include "kinesis/api.h"
#include "spdlog/spdlog.h"

namespace runnel::kinesis {
namespace {

// AWS ends a SubscribeToShard after five minutes; clients subscribe again.
constexpr absl::Duration kSubscriptionLifetime = absl::Minutes(5);
// How often the loop looks for stalled subscribers and totals the request bodies being
// received (the loop wakes at least this often).
constexpr int kSweepMs = 10;
// How long HTTP/2 clients get after the GOAWAY at shutdown before h2o closes their connections.
constexpr int kGracefulShutdownMs = 1000;

struct Call;

// A message from a worker or broker thread to the loop.
struct LoopMessage {
  h2o_multithread_message_t super{};  // first: h2o links messages through it (unlinked: zeroed)
  enum Kind { kResponse, kEvent, kWake } kind = kWake;
  std::shared_ptr<Call> call;
  ApiResponse response;  // kResponse
  std::string chunk;     // kEvent: one event-stream message
  bool end = false;      // kEvent: the subscription is over after `chunk`
};

// One HTTP request. `req` and everything below it belong to the loop thread.
struct Call {
  KinesisHttpServer::Impl* server = nullptr;
  h2o_req_t* req = nullptr;      // null once h2o disposed the request (client gone, or answered)
  h2o_socket_t* sock = nullptr;  // its connection's (a key of Impl::sockets; never followed)

  // SubscribeToShard only.
  struct Generator {
    h2o_generator_t super;  // first: h2o hands this pointer back
    Call* call;
  } generator{};
  std::unique_ptr<broker::Subscription> subscription;
  WireFormat format = WireFormat::kJson;
  absl::Time deadline;
  bool next_pending = false;  // a Subscription::Next has not answered yet
  bool sending = false;       // h2o holds `in_flight` until it calls proceed
  bool ended = false;         // no more Next calls
  bool final_sent = false;
  bool stalled = false;      // ended by the sweep: its client took nothing for the stall timeout
  absl::Time sending_since;  // when h2o took `in_flight` (while `sending`)
  std::string in_flight;
  std::deque<std::pair<std::string, bool>> ready;  // (chunk, last)
};

}  // namespace

// A connection's socket from accept to close, for the connection cap and the total of request
// bodies being received. h2o's server side leaves the socket's on_close hook unused, and keeps
// the socket when a connection turns into HTTP/2.
struct TrackedSocket {
  KinesisHttpServer::Impl* server = nullptr;
  h2o_socket_t* sock = nullptr;
  int requests = 0;        // requests of ours on it not yet disposed (HTTP/1.1: its body is in)
  bool http2 = false;      // seen carrying an HTTP/2 request
  bool shut_down = false;  // by Sweep; h2o closes it at its next turn
};

struct KinesisHttpServer::Impl {
  broker::Broker* broker = nullptr;
  KinesisHttpOptions options;
  absl::Duration stall_timeout = absl::Seconds(30);
  std::unique_ptr<KinesisApi> api;
  std::unique_ptr<Scheduler> workers;

  h2o_globalconf_t config{};
  h2o_context_t context{};
  h2o_accept_ctx_t accept_context{};
  h2o_evloop_t* loop = nullptr;
  h2o_socket_t* listener = nullptr;
  h2o_multithread_receiver_t receiver{};
  std::thread thread;

  std::atomic<bool> stop_requested{false};
  bool wake_seen = false;     // loop thread: Shutdown's wake-up message was taken off the queue
  bool stopped = false;       // guarded by the caller of Shutdown
  bool leak_context = false;  // set by Run when a client kept a connection past the grace
  absl::Duration grace = absl::Seconds(2);
  // Answers and subscription events not yet delivered to the loop; the loop outlives them.
  std::atomic<int64_t> in_flight{0};
  // Streaming calls, for ending them at shutdown (loop thread only).
  absl::flat_hash_map<Call*, std::shared_ptr<Call>> streams;
  // Open connections' sockets (loop thread only).
  absl::flat_hash_map<h2o_socket_t*, TrackedSocket*> sockets;
  absl::Time next_sweep = absl::InfinitePast();

  void Post(LoopMessage* message) { h2o_multithread_send_message(&receiver, &message->super); }
  void Run();
  void DeliverResponse(const std::shared_ptr<Call>& call, ApiResponse response);
  void RequestNext(const std::shared_ptr<Call>& call);
  void DeliverEvent(const std::shared_ptr<Call>& call, std::string chunk, bool end);
  void SendPending(Call& call);
  void ForgetStream(const std::shared_ptr<Call>& call);
  // Ends stalled subscriptions and closes the connections with the largest request bodies
  // while the bodies being received exceed max_pending_request_bytes.
  void Sweep();
};

namespace {

struct Handler {
  h2o_handler_t super;  // first: h2o hands this pointer back
  KinesisHttpServer::Impl* server;
};

std::string_view HeaderValue(h2o_req_t* req, const h2o_token_t* token) {
  ssize_t index = h2o_find_header(&req->headers, token, -1);
  if (index < 0) return {};
  const h2o_iovec_t& value = req->headers.entries[index].value;
  return std::string_view(value.base, value.len);
}

std::string_view HeaderValue(h2o_req_t* req, std::string_view lowercase_name) {
  ssize_t index =
      h2o_find_header_by_str(&req->headers, lowercase_name.data(), lowercase_name.size(), -1);
  if (index < 0) return {};
  const h2o_iovec_t& value = req->headers.entries[index].value;
  return std::string_view(value.base, value.len);
}

void AddHeader(h2o_req_t* req, const h2o_token_t* token, std::string_view value) {
  h2o_iovec_t copy = h2o_strdup(&req->pool, value.data(), value.size());
  h2o_add_header(&req->pool, &req->res.headers, token, nullptr, copy.base, copy.len);
}

void AddHeader(h2o_req_t* req, std::string_view name, std::string_view value) {
  h2o_iovec_t copy = h2o_strdup(&req->pool, value.data(), value.size());
  h2o_add_header_by_str(&req->pool, &req->res.headers, name.data(), name.size(), 0, nullptr,
                        copy.base, copy.len);
}

std::string RequestId() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t base = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  return absl::StrCat(absl::Hex(base, absl::kZeroPad16), "-",
                      absl::Hex(counter.fetch_add(1), absl::kZeroPad16));
}

h2o_socket_t* SocketOf(h2o_req_t* req) {
  if (req->conn == nullptr || req->conn->callbacks->get_socket == nullptr) return nullptr;
  return req->conn->callbacks->get_socket(req->conn);
}

// Ends a connection from outside h2o (which has no call for it): the kernel fails its reads
// and writes, and h2o closes it as for a client that went away.
void ShutDownSocket(h2o_socket_t* sock) {
  if (sock != nullptr) ::shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

// What an HTTP/1.1 client refused at the door, or whose body overran the total, is told.
constexpr std::string_view kServiceUnavailable =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.1\r\n"
    "x-amzn-ErrorType: ServiceUnavailable\r\nConnection: close\r\nContent-Length: 71\r\n\r\n"
    "{\"__type\":\"ServiceUnavailable\",\"message\":\"the server is overloaded\"}\n";

void SendServiceUnavailable(h2o_socket_t* sock) {
  // A fresh or reading connection has nothing else being written; a short write is all lost
  // anyway, as the connection closes.
  (void)!::send(h2o_socket_get_fd(sock), kServiceUnavailable.data(), kServiceUnavailable.size(),
                MSG_NOSIGNAL | MSG_DONTWAIT);
}

void OnSocketClosed(void* data) {
  auto* tracked = static_cast<TrackedSocket*>(data);
  tracked->server->sockets.erase(tracked->sock);
  delete tracked;
}

// The request's memory pool holds one of these; h2o runs the dispose callback (on the loop)
// when it frees the request.
void OnRequestDisposed(void* slot) {
  auto* holder = *static_cast<std::shared_ptr<Call>**>(slot);
  std::shared_ptr<Call> call = std::move(*holder);
  delete holder;
  call->req = nullptr;
  if (auto it = call->server->sockets.find(call->sock); it != call->server->sockets.end()) {
    --it->second->requests;
  }
  if (call->subscription != nullptr) {
    call->ended = true;
    if (call->next_pending) {
      call->subscription->Cancel();  // the pending Next answers soon; then it is freed
    } else {
      call->server->ForgetStream(call);
    }
  }
}

void OnProceed(h2o_generator_t* generator, h2o_req_t*) {
  Call* call = reinterpret_cast<Call::Generator*>(generator)->call;
  call->sending = false;
  call->in_flight.clear();
  call->server->SendPending(*call);
}

void OnStop(h2o_generator_t* generator, h2o_req_t*) {
  Call* call = reinterpret_cast<Call::Generator*>(generator)->call;
  call->ended = true;
  if (call->subscription != nullptr) call->subscription->Cancel();
}

int OnRequest(h2o_handler_t* self, h2o_req_t* req) {
  KinesisHttpServer::Impl* server = reinterpret_cast<Handler*>(self)->server;
  if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
    req->res.status = 405;
    req->res.reason = "Method Not Allowed";
    AddHeader(req, H2O_TOKEN_CONTENT_TYPE, "text/plain");
    static constexpr std::string_view kBody =
        "runnel's Kinesis API: POST / with X-Amz-Target: Kinesis_20131202.<Operation>\n";
    req->res.content_length = kBody.size();
    h2o_send_inline(req, kBody.data(), kBody.size());
    return 0;
  }
  auto call = std::make_shared<Call>();
  call->server = server;
  call->req = req;
  call->sock = SocketOf(req);
  if (auto it = server->sockets.find(call->sock); it != server->sockets.end()) {
    ++it->second->requests;
    if (req->version >= 0x200) it->second->http2 = true;
  }
  auto** slot = static_cast<std::shared_ptr<Call>**>(
      h2o_mem_alloc_shared(&req->pool, sizeof(std::shared_ptr<Call>*), OnRequestDisposed));
  *slot = new std::shared_ptr<Call>(call);

  // Copied: the worker must not read h2o's buffers, which die with the request.
  std::string target(HeaderValue(req, "x-amz-target"));
  std::string content_type(HeaderValue(req, H2O_TOKEN_CONTENT_TYPE));
  std::string body(req->entity.base == nullptr ? ""
                                               : std::string(req->entity.base, req->entity.len));
  server->in_flight.fetch_add(1);
  server->workers->Post([server, call, target = std::move(target),
                         content_type = std::move(content_type), body = std::move(body)] {
    server->api->Handle(target, content_type, body, [server, call](ApiResponse response) {
      auto* message = new LoopMessage;
      message->kind = LoopMessage::kResponse;
      message->call = call;
      message->response = std::move(response);
      server->Post(message);
    });
  });
  return 0;
}

void OnAccept(h2o_socket_t* listener, const char* error) {
  if (error != nullptr) return;
  auto* server = static_cast<KinesisHttpServer::Impl*>(listener->data);
  // Take every connection waiting, not one per wake-up.
  for (int i = 0; i < 64; ++i) {
    h2o_socket_t* sock = h2o_evloop_socket_accept(listener);
    if (sock == nullptr) return;
    if (server->sockets.size() >= static_cast<size_t>(server->options.max_connections)) {
      spdlog::warn(
          "kinesis endpoint: {} connections open, the most --max-connections allows; refusing "
          "one (503)",
          server->sockets.size());
      SendServiceUnavailable(sock);
      h2o_socket_close(sock);
      continue;
    }
    auto* tracked = new TrackedSocket{server, sock};
    server->sockets[sock] = tracked;
    sock->on_close.cb = OnSocketClosed;
    sock->on_close.data = tracked;
    h2o_accept(&server->accept_context, sock);
  }
}

void OnMessages(h2o_multithread_receiver_t* receiver, h2o_linklist_t* messages) {
  auto* server = reinterpret_cast<KinesisHttpServer::Impl*>(
      reinterpret_cast<char*>(receiver) - offsetof(KinesisHttpServer::Impl, receiver));
  while (!h2o_linklist_is_empty(messages)) {
    auto* message = reinterpret_cast<LoopMessage*>(
        H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next));
    h2o_linklist_unlink(&message->super.link);
    std::unique_ptr<LoopMessage> owned(message);
    switch (message->kind) {
      case LoopMessage::kResponse:
        server->DeliverResponse(message->call, std::move(message->response));
        server->in_flight.fetch_sub(1);
        break;
      case LoopMessage::kEvent:
        server->DeliverEvent(message->call, std::move(message->chunk), message->end);
        server->in_flight.fetch_sub(1);
        break;
      case LoopMessage::kWake:
        server->wake_seen = true;
        break;
    }
  }
}

absl::StatusOr<int> Listen(const std::string& spec, std::string* bound) {
  const size_t colon = spec.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(Sv(spec).substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kinesis-listen: '", spec, "' is not HOST:PORT (e.g. 127.0.0.1:4569; port 0: any)"));
  }
  std::string host = spec.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc =
          getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints, &addresses);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kinesis-listen ", spec, ": ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  int fd = -1;
  for (addrinfo* a = addresses; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, SOMAXCONN) != 0) {
      last_error = std::strerror(errno);
      last_error[0] = absl::ascii_tolower(static_cast<unsigned char>(last_error[0]));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(addresses);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("--kinesis-listen ", spec, ": ", last_error));
  }
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  char text[INET6_ADDRSTRLEN] = {};
  int bound_port = 0;
  if (address.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    bound_port = ntohs(in6->sin6_port);
    *bound = absl::StrCat("[", text, "]:", bound_port);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
    bound_port = ntohs(in4->sin_port);
    *bound = absl::StrCat(text, ":", bound_port);
  }
  return fd;
}

}  // namespace

void KinesisHttpServer::Impl::DeliverResponse(const std::shared_ptr<Call>& call,
                                              ApiResponse response) {
  h2o_req_t* req = call->req;
  if (req == nullptr) return;  // the client went away; a subscription dies with `response`
  req->res.status = response.http_status;
  req->res.reason = response.http_status == 200   ? "OK"
                    : response.http_status == 400 ? "Bad Request"
                    : response.http_status == 503 ? "Service Unavailable"
                                                  : "Internal Server Error";
  AddHeader(req, H2O_TOKEN_CONTENT_TYPE, response.content_type);
  AddHeader(req, "x-amzn-requestid", RequestId());
  if (!response.error_type.empty()) AddHeader(req, "x-amzn-errortype", response.error_type);
  if (response.subscription == nullptr) {
    req->res.content_length = response.body.size();
    h2o_send_inline(req, response.body.data(), response.body.size());
    return;
  }
  // SubscribeToShard: an event stream, one event-stream message per event.
  call->subscription = std::move(response.subscription);
  call->format = response.format;
  call->deadline = absl::Now() + kSubscriptionLifetime;
  call->generator.super.proceed = OnProceed;
  call->generator.super.stop = OnStop;
  call->generator.call = call.get();
  streams[call.get()] = call;
  h2o_start_response(req, &call->generator.super);
  call->ready.emplace_back(std::move(response.body), false);
  if (stop_requested.load()) call->ended = true;
  SendPending(*call);
  if (!call->ended) RequestNext(call);
}

void KinesisHttpServer::Impl::RequestNext(const std::shared_ptr<Call>& call) {
  call->next_pending = true;
  in_flight.fetch_add(1);
  const WireFormat format = call->format;
  call->subscription->Next([this, call, format](absl::StatusOr<v1::SubscribeToShardEvent> event) {
    auto* message = new LoopMessage;
    message->kind = LoopMessage::kEvent;
    message->call = call;
    if (event.ok()) {
      message->chunk = EncodeSubscribeEvent(*event, format);
    } else if (!absl::IsCancelled(event.status()) && !absl::IsUnavailable(event.status())) {
      message->chunk = EncodeSubscribeError(event.status(), format);
      message->end = true;
    } else {
      message->end = true;  // cancelled: the client left or the server stops
    }
    Post(message);
  });
}

void KinesisHttpServer::Impl::DeliverEvent(const std::shared_ptr<Call>& call, std::string chunk,
                                           bool end) {
  call->next_pending = false;
  if (call->req == nullptr) {  // the client went away while the event was on its way
    ForgetStream(call);
    return;
  }
  if (end || absl::Now() >= call->deadline || stop_requested.load()) {
    call->ended = true;
    // Frees the consumer's place before the client hears the end, so it may subscribe again.
    call->subscription->Cancel();
  }
  call->ready.emplace_back(std::move(chunk), call->ended);
  SendPending(*call);
  // One event at a time: the next is asked for once h2o has written this one (OnProceed), so a
  // client that stops reading holds one event and the log is not read for it meanwhile.
  if (!call->ended && call->ready.empty() && !call->sending) RequestNext(call);
}

void KinesisHttpServer::Impl::SendPending(Call& call) {
  if (call.req == nullptr || call.sending || call.final_sent) return;
  if (call.ready.empty()) {
    // proceed after the last event: request the next one, or end if that was the last.
    if (call.ended && !call.next_pending) {
      call.final_sent = true;
      h2o_send(call.req, nullptr, 0, H2O_SEND_STATE_FINAL);
    } else if (!call.ended && !call.next_pending) {
      auto it = streams.find(&call);
      if (it != streams.end()) RequestNext(it->second);
    }
    return;
  }
  auto [chunk, last] = std::move(call.ready.front());
  call.ready.pop_front();
  call.in_flight = std::move(chunk);
  h2o_iovec_t buffer = h2o_iovec_init(call.in_flight.data(), call.in_flight.size());
  const bool final = last && !call.next_pending;
  call.sending = !final;
  call.sending_since = absl::Now();
  call.final_sent = final;
  h2o_send(call.req, &buffer, buffer.len == 0 ? 0 : 1,
           final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

void KinesisHttpServer::Impl::ForgetStream(const std::shared_ptr<Call>& call) {
  call->subscription.reset();  // no Next is pending
  streams.erase(call.get());
}

void KinesisHttpServer::Impl::Sweep() {
  const absl::Time now = absl::Now();
  if (now < next_sweep) return;
  next_sweep = now + absl::Milliseconds(kSweepMs);

  // A subscriber whose event h2o could not write for the stall timeout is ended; h2o closes
  // the connection once the kernel fails it.
  for (const auto& [key, call] : streams) {
    if (call->req == nullptr || !call->sending || call->stalled ||
        now - call->sending_since < stall_timeout) {
      continue;
    }
    call->stalled = true;
    call->ended = true;
    spdlog::warn("kinesis endpoint: ending a subscription whose client read nothing for {}",
                 absl::FormatDuration(stall_timeout));
    if (call->subscription != nullptr) call->subscription->CancelStalled();
    ShutDownSocket(SocketOf(call->req));
  }

  // HTTP/1.1 bodies are received into the socket's input buffer (h2o hands a request over only
  // once its body is in); sum what the open connections hold.
  size_t total = 0;
  std::vector<TrackedSocket*> receiving;
  for (const auto& [sock, tracked] : sockets) {
    if (tracked->shut_down || sock->input == nullptr || sock->input->size == 0) continue;
    total += sock->input->capacity;
    if (tracked->requests == 0) receiving.push_back(tracked);
  }
  if (total <= options.max_pending_request_bytes) return;
  std::sort(receiving.begin(), receiving.end(), [](TrackedSocket* a, TrackedSocket* b) {
    return a->sock->input->size > b->sock->input->size;
  });
  for (TrackedSocket* tracked : receiving) {
    if (total <= options.max_pending_request_bytes) break;
    spdlog::warn(
        "kinesis endpoint: request bodies being received hold {} bytes, more than "
        "--max-pending-request-bytes {}; closing a connection with {} bytes (503)",
        total, options.max_pending_request_bytes, tracked->sock->input->size);
    total -= std::min(total, tracked->sock->input->capacity);
    if (!tracked->http2) SendServiceUnavailable(tracked->sock);
    ShutDownSocket(tracked->sock);
    tracked->shut_down = true;
  }
}

void KinesisHttpServer::Impl::Run() {
  while (!stop_requested.load()) {
    h2o_evloop_run(loop, kSweepMs);
    Sweep();
  }

  // Shutting down, on the loop thread: no new connections; subscriptions end; connections
  // close once their calls are answered (HTTP/2 gets a GOAWAY).
  h2o_socket_read_stop(listener);
  h2o_socket_close(listener);
  listener = nullptr;
  for (const auto& [key, call] : streams) {
    call->ended = true;
    if (call->subscription != nullptr) call->subscription->Cancel();
  }
  h2o_context_request_shutdown(&context);
  // HTTP/2 connections get a GOAWAY and are closed by h2o after graceful_shutdown_timeout.
  const absl::Time deadline =
      absl::Now() + std::max(grace, absl::Milliseconds(kGracefulShutdownMs + 200));
  absl::Time next_report = absl::Now() + absl::Seconds(5);
  while (true) {
    const bool connections = !h2o_linklist_is_empty(&context.http1._conns) ||
                             !h2o_linklist_is_empty(&context.http2._conns);
    // Answers still owed must reach the loop before it goes (their threads post to it).
    if (in_flight.load() == 0 && (!connections || absl::Now() >= deadline)) break;
    if (absl::Now() >= next_report) {
      spdlog::warn("kinesis endpoint: waiting for {} calls in flight to finish", in_flight.load());
      next_report += absl::Seconds(5);
    }
    h2o_evloop_run(loop, 10);
  }
  // The receiver must be empty when it is unregistered: wait for Shutdown's wake-up message
  // and for any call a connection still open started meanwhile.
  while (!wake_seen || in_flight.load() > 0) h2o_evloop_run(loop, 10);
  for (const auto& [key, call] : streams) call->subscription.reset();
  streams.clear();
  // The graceful-shutdown timer must not outlive the context (h2o asserts on disposal).
  if (h2o_timeout_is_linked(&context.http2._graceful_shutdown_timeout)) {
    h2o_timeout_unlink(&context.http2._graceful_shutdown_timeout);
  }
  const bool connections = !h2o_linklist_is_empty(&context.http1._conns) ||
                           !h2o_linklist_is_empty(&context.http2._conns);
  if (connections) {
    // h2o offers no way to drop a connection from outside; freeing the context under it would
    // crash, so it is left to the process exit.
    spdlog::warn("kinesis endpoint: connections still open at shutdown; leaving them to exit");
    leak_context = true;
  }
}

absl::StatusOr<std::unique_ptr<KinesisHttpServer>> KinesisHttpServer::Start(
    broker::Broker* broker, const KinesisHttpOptions& options) {
  std::string bound;
  // Bind first, so a taken port fails before any thread starts.
  auto fd = Listen(options.listen, &bound);
  if (!fd.ok()) return fd.status();

  std::unique_ptr<KinesisHttpServer> server(new KinesisHttpServer());
  server->address_ = bound;
  server->impl_ = std::make_unique<Impl>();
  Impl& impl = *server->impl_;
  impl.broker = broker;
  impl.options = options;
  impl.stall_timeout = broker->options().subscription_stall_timeout;
  impl.api = std::make_unique<KinesisApi>(broker);
  impl.workers = std::make_unique<Scheduler>(std::max(1, options.worker_threads));

  h2o_config_init(&impl.config);
  impl.config.max_request_entity_size = options.max_request_bytes;
  impl.config.http1.upgrade_to_http2 = 1;  // "PRI * HTTP/2.0" on a fresh connection: h2c
  impl.config.http2.graceful_shutdown_timeout = kGracefulShutdownMs;
  h2o_hostconf_t* host =
      h2o_config_register_host(&impl.config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t* path = h2o_config_register_path(host, "/", 0);
  auto* handler = reinterpret_cast<Handler*>(h2o_create_handler(path, sizeof(Handler)));
  handler->super.on_req = OnRequest;
  handler->server = &impl;

  impl.loop = h2o_evloop_create();
  h2o_context_init(&impl.context, impl.loop, &impl.config);
  impl.accept_context.ctx = &impl.context;
  impl.accept_context.hosts = impl.config.hosts;
  h2o_multithread_register_receiver(impl.context.queue, &impl.receiver, OnMessages);
  impl.listener = h2o_evloop_socket_create(impl.loop, *fd, H2O_SOCKET_FLAG_DONT_READ);
  impl.listener->data = &impl;
  h2o_socket_read_start(impl.listener, OnAccept);

  impl.thread = std::thread([&impl] {
    ScopedLogTags tags{{kTagComponent, "kinesis"}};
    impl.Run();
  });
  ScopedLogTags tags{{kTagComponent, "kinesis"}};
  spdlog::info("kinesis endpoint: serving the Kinesis API on http://{} (HTTP/1.1 and h2c)", bound);
  return server;
}

void KinesisHttpServer::Shutdown(absl::Duration grace) {
  if (impl_ == nullptr || impl_->stopped) return;
  impl_->stopped = true;
  impl_->grace = grace;
  impl_->stop_requested = true;
  auto* wake = new LoopMessage;
  wake->kind = LoopMessage::kWake;
  impl_->Post(wake);
  impl_->thread.join();
  // No worker task is running or queued: every call was answered on the loop (in_flight 0).
  impl_->workers.reset();
  h2o_multithread_unregister_receiver(impl_->context.queue, &impl_->receiver);
  if (impl_->leak_context) {
    (void)impl_.release();
    return;
  }
  h2o_context_dispose(&impl_->context);
  // Let sockets closed above be freed, then free the loop.
  h2o_evloop_run(impl_->loop, 0);
  h2o_evloop_destroy(impl_->loop);
  h2o_config_dispose(&impl_->config);
}

KinesisHttpServer::~KinesisHttpServer() { Shutdown(); }

}  // namespace runnel::kinesis
