#include "broker/server.h"

#include <grpcpp/grpcpp.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "broker/broker.h"
#include "broker/message_pool.h"
#include "common/grpc_server.h"
#include "common/scheduler.h"
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

// Finishes a PutRecords or GetRecords call: swaps the broker's response into the message gRPC
// sends and gives the storage that message held back to the pool the broker builds from, so the
// records' messages and strings are reused call after call (see message_pool.h).
template <typename Response>
void FinishRecycled(grpc::ServerUnaryReactor* reactor, Response* response,
                    absl::StatusOr<Response> result) {
  if (!result.ok()) return reactor->Finish(ToGrpc(result.status()));
  response->Swap(&*result);
  MessagePool<Response>::Get().Give(std::move(*result), 0);  // sized when its holder was released
  reactor->Finish(grpc::Status::OK);
}

// Bytes a request message pins once parsed (only PutRecords requests are large).
size_t RequestBytes(const v1::PutRecordsRequest& request) {
  size_t bytes = 0;
  for (const auto& record : request.records()) {
    bytes += record.data().capacity() + record.partition_key().capacity();
  }
  return bytes;
}
size_t RequestBytes(const v1::GetRecordsRequest&) { return 0; }

// Gives gRPC request and response messages that are reused call after call: gRPC parses a
// request into a cleared one (reusing its records and their strings), and the response keeps
// the storage that FinishRecycled swaps into it for the next call to recycle.
template <typename Request, typename Response>
class RecyclingAllocator : public grpc::MessageAllocator<Request, Response> {
 public:
  ~RecyclingAllocator() override {
    for (Holder* holder : free_) delete holder;
  }

  grpc::MessageHolder<Request, Response>* AllocateMessages() override {
    {
      absl::MutexLock lock(&mu_);
      if (!free_.empty()) {
        Holder* holder = free_.back();
        free_.pop_back();
        return holder;
      }
    }
    return new Holder(this);
  }

 private:
  class Holder : public grpc::MessageHolder<Request, Response> {
   public:
    explicit Holder(RecyclingAllocator* owner) : owner_(owner) {
      this->set_request(&request_);
      this->set_response(&response_);
    }
    void Release() override { owner_->Recycle(this); }

    RecyclingAllocator* const owner_;
    Request request_;
    Response response_;
  };

  void Recycle(Holder* holder) {
    // The response's cached size is the size gRPC just sent (0 when it sent none).
    if (RequestBytes(holder->request_) + static_cast<size_t>(holder->response_.GetCachedSize()) >
        MessagePool<Response>::kMaxBytes) {
      delete holder;  // do not pin a large message's memory
      return;
    }
    holder->request_.Clear();
    holder->response_.Clear();
    {
      absl::MutexLock lock(&mu_);
      if (free_.size() < MessagePool<Response>::kMaxMessages) {
        free_.push_back(holder);
        return;
      }
    }
    delete holder;
  }

  absl::Mutex mu_;
  std::vector<Holder*> free_ ABSL_GUARDED_BY(mu_);
};

// What a subscription's stall timer and its reactor share: the timer may still be queued after
// the call is done, and it must never call TryCancel on a context that gRPC freed.
struct StallWatch {
  absl::Mutex mu;
  uint64_t writes ABSL_GUARDED_BY(mu) = 0;  // writes started so far
  bool writing ABSL_GUARDED_BY(mu) = false;
  bool finishing ABSL_GUARDED_BY(mu) = false;  // Finish is called: no TryCancel after it
  // A timer inside TryCancel (which may run the reactor's callbacks on its own thread).
  bool cancelling ABSL_GUARDED_BY(mu) = false;
  std::thread::id cancelling_thread ABSL_GUARDED_BY(mu);
};

// Streams a Subscription's events until the client cancels or the subscription fails. One
// write in flight at a time: the next event is asked for only when the last write is done, so
// a client that stops reading holds one event (at most subscription_buffer_bytes of records)
// and the shard is not read for it meanwhile. A write that does not complete within the stall
// timeout (the client took nothing, and flow control holds the write) cancels the call.
class SubscribeReactor : public grpc::ServerWriteReactor<v1::SubscribeToShardEvent> {
 public:
  SubscribeReactor(grpc::CallbackServerContext* context, std::unique_ptr<Subscription> subscription,
                   Scheduler* timers, absl::Duration stall_timeout)
      : context_(context),
        subscription_(std::move(subscription)),
        timers_(timers),
        stall_timeout_(stall_timeout) {
    RequestNext();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&watch_->mu);
      watch_->writing = false;
    }
    if (!ok) {
      subscription_->Cancel();  // frees the consumer's place before the client hears the end
      return FinishCall(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
    }
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
        return FinishCall(grpc::Status(grpc::StatusCode::CANCELLED, "subscription cancelled"));
      }
      if (!event.ok()) return FinishCall(ToGrpc(event.status()));
      event_ = std::move(*event);
      uint64_t write;
      {
        absl::MutexLock lock(&watch_->mu);
        write = ++watch_->writes;
        watch_->writing = true;
      }
      timers_->PostAt(absl::Now() + stall_timeout_, [watch = watch_, write, context = context_,
                                                     subscription = subscription_.get()] {
        {
          absl::MutexLock lock(&watch->mu);
          if (watch->finishing || !watch->writing || watch->writes != write) return;
          watch->cancelling = true;
          watch->cancelling_thread = std::this_thread::get_id();
          subscription->CancelStalled();
        }
        spdlog::warn("ending a subscription whose client read nothing in time");
        context->TryCancel();
        absl::MutexLock lock(&watch->mu);
        watch->cancelling = false;
        watch->cancelling_thread = {};
      });
      StartWrite(&event_);
    });
  }

  // Every end goes through here: it waits for a stall timer inside TryCancel (unless TryCancel
  // runs this on its own thread), so the context outlives that call.
  void FinishCall(grpc::Status status) {
    {
      absl::MutexLock lock(&watch_->mu);
      if (watch_->cancelling_thread != std::this_thread::get_id()) {
        watch_->mu.Await(absl::Condition(
            +[](StallWatch* watch)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch->mu) { return !watch->cancelling; },
            watch_.get()));
      }
      watch_->finishing = true;
    }
    Finish(std::move(status));
  }

  grpc::CallbackServerContext* const context_;
  std::unique_ptr<Subscription> subscription_;
  Scheduler* const timers_;
  const absl::Duration stall_timeout_;
  const std::shared_ptr<StallWatch> watch_ = std::make_shared<StallWatch>();
  v1::SubscribeToShardEvent event_;
  std::atomic<bool> cancelled_{false};
};

// GetRecords may wait (a long poll): when the client goes away or the server shuts down, the
// wait is cut short instead of holding the call open until its wait_time.
class GetRecordsReactor : public grpc::ServerUnaryReactor {
 public:
  GetRecordsReactor(Broker* broker, const v1::GetRecordsRequest* request,
                    v1::GetRecordsResponse* response) {
    Broker::CancelFn cancel = broker->GetRecords(
        *request, [this, response](absl::StatusOr<v1::GetRecordsResponse> result) {
          FinishRecycled<v1::GetRecordsResponse>(this, response, std::move(result));
        });
    absl::MutexLock lock(&mu_);
    cancel_ = std::move(cancel);
  }
  void OnCancel() override {
    Broker::CancelFn cancel;
    {
      absl::MutexLock lock(&mu_);
      cancel = cancel_;
    }
    if (cancel) cancel();
  }
  void OnDone() override { delete this; }

 private:
  absl::Mutex mu_;
  Broker::CancelFn cancel_ ABSL_GUARDED_BY(mu_);
};

class StreamBrokerService final : public v1::StreamBroker::CallbackService {
 public:
  explicit StreamBrokerService(Broker* broker) : broker_(broker) {
    SetMessageAllocatorFor_PutRecords(&put_records_allocator_);
    SetMessageAllocatorFor_GetRecords(&get_records_allocator_);
  }

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
  RUNNEL_SYNC_UNARY(AcquireLease, FinishUnary(reactor, response, broker_->AcquireLease(*request)))
  RUNNEL_SYNC_UNARY(RenewLease, FinishUnary(reactor, response, broker_->RenewLease(*request)))
  RUNNEL_SYNC_UNARY(ReleaseLease, FinishUnary(reactor, response, broker_->ReleaseLease(*request)))
  RUNNEL_SYNC_UNARY(ListLeases, FinishUnary(reactor, response, broker_->ListLeases(*request)))
  RUNNEL_SYNC_UNARY(Heartbeat, FinishUnary(reactor, response, broker_->Heartbeat(*request)))
  // The next three complete later (once durable, or once records arrive).
  RUNNEL_SYNC_UNARY(PutRecords, broker_->PutRecords(*request, [reactor, response](auto result) {
    FinishRecycled(reactor, response, std::move(result));
  }))
  RUNNEL_SYNC_UNARY(PutRecord, broker_->PutRecord(*request, [reactor, response](auto result) {
    FinishUnary(reactor, response, std::move(result));
  }))
  RUNNEL_SYNC_UNARY(GetRecords, broker_->GetRecords(*request, [reactor, response](auto result) {
    FinishRecycled(reactor, response, std::move(result));
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
    return new SubscribeReactor(context, std::move(*subscription), &stall_timers_,
                                broker_->options().subscription_stall_timeout);
  }

 private:
  Broker* const broker_;
  // Declared after broker_ and destroyed before it; every call has ended by then (the server
  // is shut down and waited for first).
  RecyclingAllocator<v1::PutRecordsRequest, v1::PutRecordsResponse> put_records_allocator_;
  RecyclingAllocator<v1::GetRecordsRequest, v1::GetRecordsResponse> get_records_allocator_;
  // Subscriptions' stall timers (see SubscribeReactor); its tasks check that their call is
  // still open, so those left when the server stops are harmless.
  Scheduler stall_timers_{1};
};

}  // namespace

struct BrokerServer::Impl {
  explicit Impl(Broker* broker) : broker(broker), service(broker) {}
  Broker* broker;
  StreamBrokerService service;
  std::unique_ptr<GrpcServer> server;
  bool shut_down = false;
};

absl::StatusOr<std::unique_ptr<BrokerServer>> BrokerServer::Start(Broker* broker,
                                                                  const ServerOptions& options) {
  std::unique_ptr<BrokerServer> server(new BrokerServer());
  server->impl_ = std::make_unique<Impl>(broker);
  std::vector<grpc::Service*> services = {&server->impl_->service};
  services.insert(services.end(), options.extra_services.begin(), options.extra_services.end());
  auto started = GrpcServer::Start(options.listen, services, kMaxGrpcMessageBytes);
  if (!started.ok()) return started.status();
  server->impl_->server = std::move(*started);
  server->address_ = server->impl_->server->address();
  return server;
}

BrokerServer::~BrokerServer() { Shutdown(absl::Seconds(1)); }

void BrokerServer::Shutdown(absl::Duration grace) {
  if (impl_ == nullptr || impl_->shut_down) return;
  impl_->shut_down = true;
  // Long polls and subscriptions would otherwise hold the shutdown until their waits end.
  impl_->broker->CancelAllReads();
  impl_->server->Shutdown(grace);
}

std::shared_ptr<grpc::Channel> BrokerServer::InProcessChannel() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  args.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  return impl_->server->server().InProcessChannel(args);
}

std::shared_ptr<grpc::Channel> MakeBrokerChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxGrpcMessageBytes);
  args.SetMaxSendMessageSize(kMaxGrpcMessageBytes);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

}  // namespace runnel::broker
