#include "poller/admin_service.h"

#include <grpcpp/grpcpp.h>

#include "poller/mapping_controller.h"
#include "runnel/v1/mappings.grpc.pb.h"

namespace runnel::poller {
namespace {

template <typename Response>
grpc::Status Reply(absl::StatusOr<Response> result, Response* response) {
  if (!result.ok()) {
    return grpc::Status(static_cast<grpc::StatusCode>(result.status().code()),
                        std::string(result.status().message()));
  }
  *response = std::move(*result);
  return grpc::Status::OK;
}

// A synchronous service: a change may wait for batches in flight to finish (up to the stop
// grace), which must not hold one of gRPC's callback threads that the broker's calls need.
class EventSourceMappingsService final : public v1::EventSourceMappings::Service {
 public:
  explicit EventSourceMappingsService(std::function<MappingController*()> controller)
      : controller_(std::move(controller)) {}

  grpc::Status ListEventSourceMappings(grpc::ServerContext*,
                                       const v1::ListEventSourceMappingsRequest* request,
                                       v1::ListEventSourceMappingsResponse* response) override {
    return Call(&MappingController::List, *request, response);
  }
  grpc::Status GetEventSourceMapping(grpc::ServerContext*,
                                     const v1::GetEventSourceMappingRequest* request,
                                     v1::EventSourceMappingConfiguration* response) override {
    return Call(&MappingController::Get, *request, response);
  }
  grpc::Status EnableEventSourceMapping(grpc::ServerContext*,
                                        const v1::EnableEventSourceMappingRequest* request,
                                        v1::EventSourceMappingConfiguration* response) override {
    return Call(&MappingController::Enable, *request, response);
  }
  grpc::Status DisableEventSourceMapping(grpc::ServerContext*,
                                         const v1::DisableEventSourceMappingRequest* request,
                                         v1::EventSourceMappingConfiguration* response) override {
    return Call(&MappingController::Disable, *request, response);
  }
  grpc::Status UpdateEventSourceMapping(grpc::ServerContext*,
                                        const v1::UpdateEventSourceMappingRequest* request,
                                        v1::EventSourceMappingConfiguration* response) override {
    return Call(&MappingController::Update, *request, response);
  }
  grpc::Status SeekEventSourceMapping(grpc::ServerContext*,
                                      const v1::SeekEventSourceMappingRequest* request,
                                      v1::SeekEventSourceMappingResponse* response) override {
    return Call(&MappingController::Seek, *request, response);
  }

 private:
  template <typename Request, typename Response, typename Result>
  grpc::Status Call(absl::StatusOr<Result> (MappingController::*method)(const Request&),
                    const Request& request, Response* response) {
    MappingController* controller = controller_();
    if (controller == nullptr) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "this server runs no poller, so no event source mappings (start "
                          "`runnel up -f FILE`, or point --poller at a `runnel poller`)");
    }
    return Reply<Response>((controller->*method)(request), response);
  }

  const std::function<MappingController*()> controller_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeEventSourceMappingsService(
    std::function<MappingController*()> controller) {
  return std::make_unique<EventSourceMappingsService>(std::move(controller));
}

}  // namespace runnel::poller
