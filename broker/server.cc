#include "broker/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "broker/broker.h"
#include "runnel/v1/broker.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace runnel::broker {
namespace {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// Finishes a unary call with `result`, copying it into the response message.
template <typename Response>
void FinishUnary(grpc::ServerUnaryReactor* reactor, Response* response,
                 absl::StatusOr<Response> result) {
  if (!result.ok()) return reactor->Finish(ToGrpc(result.status()));
  *response = std::move(*result);
  reactor->Finish(grpc::Status::OK);
}

// Streams a Subscription's events until the client cancels or the subscription fails. One
// write in flight at a time: the next event is asked for only when the last write is done.
class SubscribeReactor : public grpc::ServerWriteReactor<v1::SubscribeToShardEvent> {
 public:
  explicit SubscribeReactor(std::unique_ptr<Subscription> subscription)
      : subscription_(std::move(subscription)) {
    RequestNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
    RequestNext();
  }
  void OnCancel() override {
    cancelled_ = true;
    subscription_->Cancel();
  }
  void OnDone() override { delete this; }

 private:
  void RequestNext() {
    subscription_->Next([this](absl::StatusOr<v1::SubscribeToShardEvent> event) {
      if (cancelled_.load()) {
        return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "subscription cancelled"));
      }
      if (!event.ok()) return Finish(ToGrpc(event.status()));
      event_ = std::move(*event);
      StartWrite(&event_);
    });
  }

  std::unique_ptr<Subscription> subscription_;
  v1::SubscribeToShardEvent event_;
  std::atomic<bool> cancelled_{false};
};

class StreamBrokerService final : public v1::StreamBroker::CallbackService {
 public:
  explicit StreamBrokerService(Broker* broker) : broker_(broker) {}

#define RUNNEL_SYNC_UNARY(Method, Call)                                       \
  grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext* context,      \
                                   const v1::Method##Request* request,        \
                                   v1::Method##Response* response) override { \
    auto* reactor = context->DefaultReactor();                                \
    Call;                                                                     \
    return reactor;                                                           \
  }

  RUNNEL_SYNC_UNARY(CreateStream, {
    absl::Status status = broker_->CreateStream(*request);
    reactor->Finish(ToGrpc(status));
  })
  RUNNEL_SYNC_UNARY(DeleteStream, reactor->Finish(ToGrpc(broker_->DeleteStream(*request))))
  RUNNEL_SYNC_UNARY(ListStreams, FinishUnary(reactor, response, broker_->ListStreams(*request)))
  RUNNEL_SYNC_UNARY(DescribeStreamSummary,
                    FinishUnary(reactor, response, broker_->DescribeStreamSummary(*request)))
  RUNNEL_SYNC_UNARY(ListShards, FinishUnary(reactor, response, broker_->ListShards(*request)))
  RUNNEL_SYNC_UNARY(IncreaseStreamRetentionPeriod,
                    reactor->Finish(ToGrpc(broker_->IncreaseStreamRetentionPeriod(*request))))
  RUNNEL_SYNC_UNARY(DecreaseStreamRetentionPeriod,
                    reactor->Finish(ToGrpc(broker_->DecreaseStreamRetentionPeriod(*request))))
  RUNNEL_SYNC_UNARY(GetShardIterator,
                    FinishUnary(reactor, response, broker_->GetShardIterator(*request)))
  RUNNEL_SYNC_UNARY(GetCheckpoint, FinishUnary(reactor, response, broker_->GetCheckpoint(*request)))
  RUNNEL_SYNC_UNARY(ListCheckpoints,
                    FinishUnary(reactor, response, broker_->ListCheckpoints(*request)))
  RUNNEL_SYNC_UNARY(SetCheckpoint, FinishUnary(reactor, response, broker_->SetCheckpoint(*request)))
  RUNNEL_SYNC_UNARY(DeleteCheckpoints,
                    FinishUnary(reactor, response, broker_->DeleteCheckpoints(*request)))
  // The next three complete later (once durable, or once records arrive).
  RUNNEL_SYNC_UNARY(PutRecords, broker_->PutRecords(*request, [reactor, response](auto result) {
    FinishUnary(reactor, response, std::move(result));
  }))
  RUNNEL_SYNC_UNARY(PutRecord, broker_->PutRecord(*request, [reactor, response](auto result) {
    FinishUnary(reactor, response, std::move(result));
  }))
  RUNNEL_SYNC_UNARY(GetRecords, broker_->GetRecords(*request, [reactor, response](auto result) {
    FinishUnary(reactor, response, std::move(result));
  }))
#undef RUNNEL_SYNC_UNARY

  grpc::ServerWriteReactor<v1::SubscribeToShardEvent>* SubscribeToShard(
      grpc::CallbackServerContext* context, const v1::SubscribeToShardRequest* request) override {
    auto subscription = broker_->SubscribeToShard(*request);
    if (!subscription.ok()) {
      class Failed : public grpc::ServerWriteReactor<v1::SubscribeToShardEvent> {
       public:
        explicit Failed(grpc::Status status) { Finish(std::move(status)); }
        void OnDone() override { delete this; }
      };
      return new Failed(ToGrpc(subscription.status()));
    }
    return new SubscribeReactor(std::move(*subscription));
  }

 private:
  Broker* const broker_;
};

}  // namespace

struct BrokerServer::Impl {
  explicit Impl(Broker* broker) : service(broker) {}
  StreamBrokerService service;
  std::unique_ptr<grpc::Server> server;
  bool shut_down = false;
};

absl::StatusOr<std::unique_ptr<BrokerServer>> BrokerServer::Start(Broker* broker,
                                                                  const ServerOptions& options) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  std::unique_ptr<BrokerServer> server(new BrokerServer());
  server->impl_ = std::make_unique<Impl>(broker);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  builder.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  builder.RegisterService(&server->impl_->service);
  for (grpc::Service* service : options.extra_services) builder.RegisterService(service);
  server->impl_->server = builder.BuildAndStart();
  if (server->impl_->server == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen,
                     " (address in use, not a local address, or malformed: expected HOST:PORT)"));
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  server->address_ = absl::StrCat(host, ":", port);
  return server;
}

BrokerServer::~BrokerServer() { Shutdown(absl::Seconds(1)); }

void BrokerServer::Shutdown(absl::Duration grace) {
  if (impl_ == nullptr || impl_->shut_down) return;
  impl_->shut_down = true;
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  impl_->server->Wait();
}

std::shared_ptr<grpc::Channel> BrokerServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  args.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  return impl_->server->InProcessChannel(args);
}

std::shared_ptr<grpc::Channel> MakeBrokerChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  args.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

}  // namespace runnel::broker
