// The handler poller_bench maps its streams to: a no-op that counts records and batches, keeps the
// newest arrival time it has seen (for the iterator age) and, for latency-probe records (see
// poller_bench_probe.h), stores now - send time. It reports through the shared-memory file named
// by its PROBE_SHM environment entry.
#include <fcntl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <runnel/handler.h>

#include <stdexcept>
#include <string>

#include "bench/poller_bench_probe.h"

namespace {

using runnel::bench::kMaxProbeSamples;
using runnel::bench::kProbeHeaderBytes;
using runnel::bench::kProbeMagic;
using runnel::bench::ProbeShm;

int64_t MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

class Probe : public runnel::Handler {
 public:
  void Init(const runnel::Config& config) override {
    const std::string path = config.env("PROBE_SHM");
    if (path.empty()) throw std::runtime_error("PROBE_SHM is not set");
    const int fd = ::open(path.c_str(), O_RDWR);
    if (fd < 0) throw std::runtime_error("cannot open " + path);
    void* mapped = ::mmap(nullptr, sizeof(ProbeShm), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (mapped == MAP_FAILED) throw std::runtime_error("cannot map " + path);
    shm_ = static_cast<ProbeShm*>(mapped);
  }
  ~Probe() override {
    if (shm_ != nullptr) ::munmap(shm_, sizeof(ProbeShm));
  }

  runnel::Result Handle(const runnel::Event& event, runnel::Context&) override {
    int64_t now_ns = 0;  // read once per batch, and only if it holds probe records
    for (const runnel::Record& record : event.records()) {
      if (record.data_size() < kProbeHeaderBytes ||
          std::memcmp(record.data_bytes(), kProbeMagic, sizeof(kProbeMagic)) != 0) {
        continue;
      }
      if (record.data_bytes()[sizeof(kProbeMagic) + sizeof(int64_t)] != 1) continue;
      if (now_ns == 0) now_ns = MonotonicNs();
      int64_t sent_ns;
      std::memcpy(&sent_ns, record.data_bytes() + sizeof(kProbeMagic), sizeof(sent_ns));
      const uint64_t slot = shm_->samples_next.fetch_add(1, std::memory_order_relaxed);
      if (slot < kMaxProbeSamples) shm_->samples_ns[slot] = now_ns - sent_ns;
    }
    if (!event.records().empty()) {
      const int64_t arrival = event.records()[event.size() - 1].approximate_arrival_timestamp_ms();
      int64_t seen = shm_->max_arrival_ms.load(std::memory_order_relaxed);
      while (arrival > seen && !shm_->max_arrival_ms.compare_exchange_weak(
                                   seen, arrival, std::memory_order_relaxed)) {
      }
    }
    shm_->batches.fetch_add(1, std::memory_order_relaxed);
    shm_->records.fetch_add(event.size(), std::memory_order_release);
    return runnel::Result::Success();
  }

 private:
  ProbeShm* shm_ = nullptr;
};

}  // namespace

RUNNEL_HANDLER(Probe)
