// The quick start's handler: reads {"orderId", "customerId", "amount"} orders in batch order and
// logs "Processing order <orderId>" for each. A malformed order fails the whole invocation by
// throwing, so that bisect-on-error and the on-failure destination have something to show.
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <runnel/handler.h>

#include <stdexcept>
#include <string>

namespace orders {

// The error type the invocation fails with ("orders::MalformedOrder").
class MalformedOrder : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class OrderProcessor : public runnel::Handler {
 public:
  runnel::Result Handle(const runnel::Event& event, runnel::Context& context) override {
    for (const runnel::Record& record : event.records()) {
      std::string data(record.data());
      rapidjson::Document order;
      order.Parse(data.c_str(), data.size());
      std::string where = "record " + std::string(record.sequence_number());
      if (order.HasParseError()) {
        throw MalformedOrder(where +
                             ": not JSON: " + rapidjson::GetParseError_En(order.GetParseError()));
      }
      if (!order.IsObject() || !order.HasMember("orderId") || !order["orderId"].IsString() ||
          !order.HasMember("customerId") || !order["customerId"].IsString() ||
          !order.HasMember("amount") || !order["amount"].IsNumber()) {
        throw MalformedOrder(where +
                             ": an order needs orderId (string), customerId (string) and amount "
                             "(number)");
      }
      context.logger().info(std::string("Processing order ") + order["orderId"].GetString());
    }
    return runnel::Result::Success();
  }
};

}  // namespace orders

RUNNEL_HANDLER(orders::OrderProcessor)
