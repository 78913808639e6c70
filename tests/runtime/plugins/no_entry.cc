// Test plugin: a shared library that is not a runnel handler (no runnel_handler_entry).
extern "C" __attribute__((visibility("default"))) int not_a_handler(void) { return 42; }
