/* Test plugin written against the plain C ABI: succeeds on empty batches, and otherwise returns
 * an outcome code that does not exist (42), which the runtime must report as an invalid
 * response. */
#include <runnel/handler.h>

static int g_instance;

static void* Create(const runnel_init_config* config) {
  static const char kMessage[] = "c plugin ready";
  runnel_bytes message = {kMessage, sizeof(kMessage) - 1};
  config->log(config->host_data, RUNNEL_LOG_INFO, message);
  return &g_instance;
}
static void Destroy(void* instance) {}
static int32_t Handle(void* instance, const runnel_event* event, const runnel_context* context) {
  return event->record_count == 0 ? RUNNEL_OUTCOME_SUCCESS : 42;
}

static const runnel_handler_api kApi = {RUNNEL_HANDLER_ABI_VERSION,
                                        sizeof(runnel_handler_api),
                                        "bad outcome test",
                                        Create,
                                        Destroy,
                                        Handle};

__attribute__((visibility("default"))) const runnel_handler_api* runnel_handler_entry(void) {
  return &kApi;
}
