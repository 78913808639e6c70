// Test plugin: its Init refuses to start by throwing.
#include <runnel/handler.h>

#include <stdexcept>

namespace {

class InitThrows : public runnel::Handler {
 public:
  void Init(const runnel::Config& config) override {
    throw std::invalid_argument("missing setting TABLE_NAME");
  }
  runnel::Result Handle(const runnel::Event& event, runnel::Context& context) override {
    return runnel::Result::Success();
  }
};

}  // namespace

RUNNEL_HANDLER(InitThrows)
