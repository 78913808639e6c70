/* Test plugin: claims a handler ABI version this runnel does not speak. */
#include <runnel/handler.h>

static void* Create(const runnel_init_config* config) { return (void*)1; }
static void Destroy(void* instance) {}
static int32_t Handle(void* instance, const runnel_event* event, const runnel_context* context) {
  return RUNNEL_OUTCOME_SUCCESS;
}

static const runnel_handler_api kApi = {
    999u, sizeof(runnel_handler_api), "abi mismatch test", Create, Destroy, Handle};

__attribute__((visibility("default"))) const runnel_handler_api* runnel_handler_entry(void) {
  return &kApi;
}
