/* Test plugin: a well-formed handler whose static constructor crashes the process that loads it
 * (as a plugin with a broken global initialiser would). */
#include <runnel/handler.h>
#include <signal.h>

__attribute__((constructor)) static void CrashOnLoad(void) { raise(SIGSEGV); }

static void* Create(const runnel_init_config* config) { return (void*)1; }
static void Destroy(void* instance) {}
static int32_t Handle(void* instance, const runnel_event* event, const runnel_context* context) {
  return RUNNEL_OUTCOME_SUCCESS;
}

static const runnel_handler_api kApi = {RUNNEL_HANDLER_ABI_VERSION,
                                        sizeof(runnel_handler_api),
                                        "crashing constructor test",
                                        Create,
                                        Destroy,
                                        Handle};

__attribute__((visibility("default"))) const runnel_handler_api* runnel_handler_entry(void) {
  return &kApi;
}
