// `runnel worker`: the process side of isolation: process. The runtime spawns it with the channel
// socket on a known fd; it loads the plugin named in the Init frame, runs Init, then serves one
// batch at a time until the socket closes. Not meant to be started by hand.
#pragma once

namespace runnel::runtime {

// Serves the channel on `channel_fd`; returns the process's exit status (0 when the runtime
// closed the channel). Never returns when the handler crashes or runs out of memory.
int RunWorker(int channel_fd);

}  // namespace runnel::runtime
