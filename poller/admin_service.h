// The EventSourceMappings gRPC service (proto/runnel/v1/mappings.proto) over a
// MappingController. `runnel poller` serves it on its --listen address, `runnel up` on the
// broker's port (ServerOptions::extra_services).
#pragma once

#include <functional>
#include <memory>

namespace grpc {
class Service;
}

namespace runnel::poller {

class MappingController;

// `controller` gives the controller to serve (not owned), or null while there is none: calls then
// fail with UNAVAILABLE. A getter, because `runnel up` must register the service before its
// poller (which reaches the broker through the same server) exists.
std::unique_ptr<grpc::Service> MakeEventSourceMappingsService(
    std::function<MappingController*()> controller);

}  // namespace runnel::poller
