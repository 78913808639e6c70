/* Test plugin: the right ABI version, but no handle function. */
#include <runnel/handler.h>

static void* Create(const runnel_init_config* config) { return (void*)1; }
static void Destroy(void* instance) {}

static const runnel_handler_api kApi = {RUNNEL_HANDLER_ABI_VERSION,
                                        sizeof(runnel_handler_api),
                                        "malformed table test",
                                        Create,
                                        Destroy,
                                        0};

__attribute__((visibility("default"))) const runnel_handler_api* runnel_handler_entry(void) {
  return &kApi;
}
