// An out-of-tree handler: greets each record's data and reports records whose data is "bad" as
// batch-item failures.
#include <runnel/handler.h>

#include <string>

class Greeter : public runnel::Handler {
 public:
  void Init(const runnel::Config& config) override { greeting_ = config.env("GREETING", "hello"); }

  runnel::Result Handle(const runnel::Event& event, runnel::Context& context) override {
    runnel::Result result = runnel::Result::Success();
    for (const runnel::Record& record : event.records()) {
      if (record.data() == "bad") {
        result.AddBatchItemFailure(record.sequence_number());
        continue;
      }
      context.logger().info(greeting_ + ", " + std::string(record.data()));
    }
    return result;
  }

 private:
  std::string greeting_;
};

RUNNEL_HANDLER(Greeter)
