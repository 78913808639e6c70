// Recycled protobuf messages for the broker's hot RPCs (PutRecords, GetRecords), so that serving
// one does not allocate and free every record's message and strings.
//
// A cleared protobuf message keeps its repeated elements and string capacity, and refilling it
// reuses them. The broker (broker.cc) builds responses in messages taken from the pool; the gRPC
// service (server.cc) swaps them into the messages gRPC sends and gives back the ones those held.
// Internal to broker/: not part of the broker's API.
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace runnel::broker {

template <typename Message>
class MessagePool {
 public:
  // The process-wide pool of `Message`.
  static MessagePool& Get() {
    static MessagePool* pool = new MessagePool();
    return *pool;
  }

  // A cleared message: recycled if one is pooled, new otherwise.
  Message Take() {
    absl::MutexLock lock(&mu_);
    if (free_.empty()) return Message();
    Message message(std::move(free_.back()));  // a swap: the storage moves along
    free_.pop_back();
    return message;
  }

  // Clears `message` and keeps it for a later Take(), unless the pool is full or the message
  // was large (`approximate_bytes` over kMaxBytes), which would pin that much memory.
  void Give(Message&& message, size_t approximate_bytes) {
    if (approximate_bytes > kMaxBytes) return;
    message.Clear();
    absl::MutexLock lock(&mu_);
    if (free_.size() < kMaxMessages) free_.push_back(std::move(message));
  }

  static constexpr size_t kMaxMessages = 64;
  static constexpr size_t kMaxBytes = 4u << 20;

 private:
  MessagePool() = default;
  absl::Mutex mu_;
  std::vector<Message> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace runnel::broker
