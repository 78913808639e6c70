// The no-op handler runtime_bench drives: it walks the records (so the batch really reaches it)
// and succeeds.
#include <runnel/handler.h>

namespace {

class Noop : public runnel::Handler {
 public:
  runnel::Result Handle(const runnel::Event& event, runnel::Context&) override {
    size_t bytes = 0;
    for (const runnel::Record& record : event.records()) bytes += record.data_size();
    sink_ = bytes;
    return runnel::Result::Success();
  }

 private:
  volatile size_t sink_ = 0;
};

}  // namespace

RUNNEL_HANDLER(Noop)
