// The native bulk transport (include/psrpc/transport.h): links, the listener, connect, the
// receive-block pool and the shared-memory arenas. Linux only; no N-API here (binding.cc of this
// folder is the JavaScript surface), so the same code runs under valgrind in a plain C++ test.
#include "psrpc/transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace psrpc {
namespace transport {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kPoolGrain = 64 * 1024;
constexpr size_t kPoolCacheBytes = 256u << 20;
constexpr size_t kHuge = 2u << 20;
// Freed arena pages below this offset stay resident for the next payloads (grants take the lowest
// offset first, so they are reused); freed pages above it go back to the kernel. Without it an
// arena kept its high-water mark for as long as its link lived (1.5 GiB in a 50M-parameter PS).
constexpr size_t kArenaKeepBytes = 128u << 20;

std::string errno_text(const char* what, int e) { return std::string(what) + ": " + std::strerror(e); }

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

uint16_t rd16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
uint32_t rd32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t rd64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
double rdf64(const uint8_t* p) { double v; std::memcpy(&v, p, 8); return v; }
void wr32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void wr64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }

// A control frame: head, name padded to 8, then `payload` (at most 24 bytes).
std::vector<uint8_t> control_frame(uint8_t kind, uint32_t call_id, const std::string& name, const uint8_t* payload,
                                   size_t payload_len) {
  const size_t name_bytes = round_up(name.size(), 8);
  std::vector<uint8_t> f(kHeadBytes + name_bytes + payload_len, 0);
  f[0] = kind;
  f[1] = kChunked;
  const uint16_t nl = static_cast<uint16_t>(name.size());
  std::memcpy(&f[2], &nl, 2);
  wr32(&f[4], call_id);
  const double aux = static_cast<double>(payload_len);
  std::memcpy(&f[8], &aux, 8);
  std::memcpy(&f[kHeadBytes], name.data(), name.size());
  if (payload_len) std::memcpy(&f[kHeadBytes + name_bytes], payload, payload_len);
  return f;
}

// ---- receive blocks ---------------------------------------------------------------------------

// Freed receive blocks, kept for the next message of a similar size: a fresh 16 MB buffer costs
// 4,096 page faults (about as long as receiving it), a reused one none.
class Pool {
 public:
  static Pool& instance() {
    static Pool* pool = new Pool();  // never destroyed: blocks may come back during static teardown
    return *pool;
  }

  void* take(size_t length, size_t* capacity) {
    const size_t want = round_up(std::max<size_t>(length, 1), kPoolGrain);
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.lower_bound(want);
      if (it != free_.end() && it->first <= 2 * want) {
        void* p = it->second;
        *capacity = it->first;
        cached_ -= it->first;
        free_.erase(it);
        return p;
      }
    }
    void* p = nullptr;
    const size_t align = want >= 2 * kHuge ? kHuge : kPage;
    if (posix_memalign(&p, align, want) != 0) return nullptr;
    if (want >= 2 * kHuge) madvise(p, want, MADV_HUGEPAGE);  // advice only; failure changes nothing
    // fault the fresh pages in with one call, not one by one inside recv (under the socket's lock)
    madvise(p, want, MADV_POPULATE_WRITE);
    *capacity = want;
    return p;
  }

  void give(void* p, size_t capacity) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + capacity <= kPoolCacheBytes) {
        free_.emplace(capacity, p);
        cached_ += capacity;
        return;
      }
    }
    std::free(p);
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

  void trim() {
    std::multimap<size_t, void*> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      all.swap(free_);
      cached_ = 0;
    }
    for (auto& kv : all) std::free(kv.second);
  }

 private:
  std::mutex mu_;
  std::multimap<size_t, void*> free_;
  size_t cached_ = 0;
};

// ---- shared-memory arenas ---------------------------------------------------------------------

// The arena this end offers: the peer copies payloads into it, and they are handed out in place.
// Its first page holds the nonce. Lives while the link or any payload in it does.
class Arena {
 public:
  static std::shared_ptr<Arena> create(size_t size) {
    size = round_up(std::max<size_t>(size, 2 * kPage), kPage);
    const int fd = memfd_create("psrpc-bulk", MFD_CLOEXEC);
    if (fd < 0) return nullptr;
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
      ::close(fd);
      return nullptr;
    }
    void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
      ::close(fd);
      return nullptr;
    }
    auto a = std::shared_ptr<Arena>(new Arena(fd, static_cast<uint8_t*>(base), size));
    if (getrandom(a->nonce_, sizeof a->nonce_, 0) != static_cast<ssize_t>(sizeof a->nonce_)) return nullptr;
    std::memcpy(a->base_, a->nonce_, sizeof a->nonce_);
    return a;
  }

  ~Arena() {
    munmap(base_, size_);
    if (fd_ >= 0) ::close(fd_);
  }

  int fd() const { return fd_; }
  size_t size() const { return size_; }
  uint8_t* base() const { return base_; }
  const uint8_t* nonce() const { return nonce_; }

  /** The peer mapped it (or will not): the descriptor is no longer needed. */
  void close_fd() {
    std::lock_guard<std::mutex> lock(mu_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  /** Room for `length` bytes, lowest offset first (so the same pages are reused); false if none. */
  bool grant(size_t length, size_t* offset) {
    const size_t want = round_up(std::max<size_t>(length, 1), kPage);
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < want) continue;
      *offset = it->first;
      const size_t rest = it->second - want;
      const size_t at = it->first + want;
      free_.erase(it);
      if (rest) free_.emplace(at, rest);
      granted_.emplace(*offset, length);
      return true;
    }
    return false;
  }

  /** The peer says the payload at `offset` of `length` bytes is in place: true if we granted it. */
  bool claim(size_t offset, size_t length) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = granted_.find(offset);
    if (it == granted_.end() || it->second != length) return false;
    granted_.erase(it);
    return true;
  }

  void release(size_t offset, size_t length) {
    size_t len = round_up(std::max<size_t>(length, 1), kPage);
    size_t off = offset;
    const size_t keep_end = std::max(off, std::min(off + len, kArenaKeepBytes));
    if (keep_end < off + len) madvise(base_ + keep_end, off + len - keep_end, MADV_REMOVE);  // advice; failure keeps the pages
    std::lock_guard<std::mutex> lock(mu_);
    auto next = free_.lower_bound(off);
    if (next != free_.end() && off + len == next->first) {
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        off = prev->first;
        len += prev->second;
        free_.erase(prev);
      }
    }
    free_.emplace(off, len);
  }

 private:
  Arena(int fd, uint8_t* base, size_t size) : fd_(fd), base_(base), size_(size) { free_.emplace(kPage, size - kPage); }

  int fd_;
  uint8_t* base_;
  size_t size_;
  uint8_t nonce_[16] = {};
  std::mutex mu_;
  std::map<size_t, size_t> free_;     // offset -> bytes
  std::map<size_t, size_t> granted_;  // offset -> payload length, until the peer's head arrives
};

// ---- socket helpers ---------------------------------------------------------------------------

bool set_blocking(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0;
}

std::string address_of(int fd, bool peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if ((peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) : getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len)) != 0) {
    return "";
  }
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6) inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  return buf;
}

// Drops the first `n` bytes of `iov` (from index `first` on); returns the new first index.
size_t advance(std::vector<iovec>& iov, size_t first, size_t n) {
  while (n && first < iov.size()) {
    if (n >= iov[first].iov_len) {
      n -= iov[first].iov_len;
      first++;
    } else {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + n;
      iov[first].iov_len -= n;
      n = 0;
    }
  }
  return first;
}

// Sends `iov` (advancing over partial writes): every byte when `wait`, else what the socket takes
// now without blocking. Returns the bytes written, or -1 with `error` set.
ssize_t write_iov(int fd, std::vector<iovec> iov, bool wait, std::string* error) {
  size_t first = 0;
  size_t total = 0;
  while (first < iov.size()) {
    if (iov[first].iov_len == 0) {
      first++;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = &iov[first];
    msg.msg_iovlen = std::min<size_t>(iov.size() - first, IOV_MAX);
    const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | (wait ? 0 : MSG_DONTWAIT));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (!wait && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      *error = errno_text("side channel", errno);
      return -1;
    }
    total += static_cast<size_t>(n);
    first = advance(iov, first, static_cast<size_t>(n));
  }
  return static_cast<ssize_t>(total);
}

// Sends every byte of `iov`; false with `error` set otherwise.
bool write_all(int fd, std::vector<iovec> iov, std::string* error) { return write_iov(fd, std::move(iov), true, error) >= 0; }

bool token_equal(const uint8_t* a, const uint8_t* b) {
  uint8_t diff = 0;
  for (int i = 0; i < 24; i++) diff |= static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

// ---- links ------------------------------------------------------------------------------------

class LinkImpl final : public Link {
 public:
  LinkImpl(int fd, const LinkOptions& options) : fd_(fd), opt_(options) {
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt_.socket_buffer > 0) {
      setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &opt_.socket_buffer, sizeof opt_.socket_buffer);
      setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &opt_.socket_buffer, sizeof opt_.socket_buffer);
    }
    local_ = address_of(fd_, false);
    remote_ = address_of(fd_, true);
  }

  ~LinkImpl() override {
    close("link destroyed");
    join();
  }

  void start(std::shared_ptr<Events> events) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return;
    started_ = true;
    events_ = std::move(events);
    if (opt_.shm && !closing_) {
      own_ = Arena::create(opt_.shm_bytes);
      if (own_) {
        uint8_t payload[24];
        std::memcpy(payload, own_->nonce(), 16);
        wr64(payload + 16, own_->size());
        control_.push_back(control_frame(kShmOffer, 0, std::to_string(getpid()) + ":" + std::to_string(own_->fd()), payload, 24));
      }
    }
    reader_ = std::thread([this] { read_loop(); });
    writer_ = std::thread([this] { write_loop(); });
  }

  uint64_t send(const uint8_t* head, size_t head_len, std::vector<iovec> segments) override {
    Job job;
    job.head.assign(head, head + head_len);
    job.segments = std::move(segments);
    for (const iovec& v : job.segments) job.total += v.iov_len;
    return enqueue(std::move(job));
  }

  uint64_t send_raw(const uint8_t* bytes, size_t len) override {
    Job job;
    job.head.assign(bytes, bytes + len);
    job.raw = true;
    return enqueue(std::move(job));
  }

  void close(const std::string& why) override { close(why, false); }

  void join() override {
    if (reader_.joinable()) reader_.join();
    if (writer_.joinable()) writer_.join();
    std::lock_guard<std::mutex> lock(mu_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (peer_base_) munmap(peer_base_, peer_size_);
    peer_base_ = nullptr;
    if (own_) own_->close_fd();
    own_.reset();  // payloads still held keep their arena mapped
    events_.reset();
  }

  bool peer_shm() const override { return peer_shm_.load(); }
  std::string local_address() const override { return local_; }
  std::string remote_address() const override { return remote_; }

 private:
  struct Job {
    uint64_t seq = 0;
    std::vector<uint8_t> head;
    std::vector<iovec> segments;
    size_t total = 0;
    bool raw = false;
    size_t skip = 0;  // bytes of head + segments already written (by the caller's thread, see enqueue)
  };

  // Queues a message for the writer thread. When nothing is being written or waiting, the caller's
  // thread first writes what the socket takes at once (never blocking; never for shared memory):
  // a message that fits the socket buffer then leaves without waking the writer, which saved a
  // thread hand-off per message (remote-forward's 200 KB batches: 40 -> 46k samples/s).
  uint64_t enqueue(Job job) {
    std::unique_lock<std::mutex> lock(mu_);
    if (closing_ || !started_) return 0;
    job.seq = next_seq_++;
    const uint64_t seq = job.seq;
    const bool inline_ok = !writing_ && jobs_.empty() && control_.empty() && !(peer_shm_.load() && !job.raw && job.total >= kShmMinBytes);
    if (!inline_ok) {
      jobs_.push_back(std::move(job));
      cv_.notify_all();
      return seq;
    }
    writing_ = true;
    lock.unlock();
    std::string error;
    const ssize_t n = write_iov(fd_, iov_of(job), false, &error);
    const size_t total = job.head.size() + job.total;
    lock.lock();
    writing_ = false;
    if (n >= 0 && static_cast<size_t>(n) < total) {
      job.skip = static_cast<size_t>(n);
      jobs_.push_front(std::move(job));  // the writer goes on from there, before anything else
    }
    cv_.notify_all();
    lock.unlock();
    if (n < 0) {
      close(error, false);
      events_->sent(seq, false);
    } else if (static_cast<size_t>(n) == total) {
      events_->sent(seq, true);
    }
    return seq;
  }

  static std::vector<iovec> iov_of(Job& job) {
    std::vector<iovec> iov;
    iov.reserve(job.segments.size() + 1);
    iov.push_back(iovec{job.head.data(), job.head.size()});
    for (const iovec& v : job.segments) iov.push_back(v);
    return iov;
  }

  void close(const std::string& why, bool protocol) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closing_) return;
      closing_ = true;
      why_ = why;
      protocol_ = protocol;
      cv_.notify_all();
      if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);  // wakes the reader's recv and the writer's send
    }
  }

  // ---- writer

  void write_loop() {
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return closing_ || (!writing_ && (!control_.empty() || !jobs_.empty())); });
      if (closing_) break;
      writing_ = true;
      // a message the caller's thread began writing goes on first: nothing may cut into it
      const bool continuing = !jobs_.empty() && jobs_.front().skip > 0;
      if (!control_.empty() && !continuing) {
        std::vector<uint8_t> c = std::move(control_.front());
        control_.pop_front();
        lock.unlock();
        const bool ok = write_bytes(c);
        lock.lock();
        writing_ = false;
        if (!ok) break;
        continue;
      }
      Job job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      const bool ok = send_job(job);
      events_->sent(job.seq, ok);
      lock.lock();
      writing_ = false;
      if (!ok) break;
    }
    std::deque<Job> rest;
    {
      std::lock_guard<std::mutex> lock(mu_);
      rest.swap(jobs_);
    }
    for (const Job& j : rest) events_->sent(j.seq, false);
  }

  bool write_bytes(const std::vector<uint8_t>& bytes) {
    std::string error;
    if (write_all(fd_, {iovec{const_cast<uint8_t*>(bytes.data()), bytes.size()}}, &error)) return true;
    close(error, false);
    return false;
  }

  bool send_job(Job& job) {
    if (!job.raw && job.skip == 0 && peer_shm_.load() && job.total >= kShmMinBytes) {
      const int r = send_via_shm(job);
      if (r != 0) return r > 0;
    }
    std::vector<iovec> iov = iov_of(job);
    if (job.skip) iov.erase(iov.begin(), iov.begin() + static_cast<long>(advance(iov, 0, job.skip)));
    std::string error;
    if (write_all(fd_, std::move(iov), &error)) return true;
    close(error, false);
    return false;
  }

  // 1: sent through the peer's arena; 0: no room there (send over TCP); -1: the link failed.
  int send_via_shm(Job& job) {
    uint32_t ask;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ask = ++ask_;
      grant_state_ = Grant::Waiting;
    }
    uint8_t len[8];
    wr64(len, job.total);
    if (!write_bytes(control_frame(kShmAsk, ask, "", len, 8))) return -1;
    size_t offset = 0;
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      // control frames (our grants for the peer's asks) must go out while we wait for ours
      cv_.wait(lock, [&] { return closing_ || grant_state_ != Grant::Waiting || !control_.empty(); });
      if (closing_) return -1;
      if (!control_.empty()) {
        std::vector<uint8_t> c = std::move(control_.front());
        control_.pop_front();
        lock.unlock();
        if (!write_bytes(c)) return -1;
        continue;
      }
      if (grant_state_ == Grant::Denied) return 0;
      offset = grant_offset_;
      break;
    }
    if (offset % kPage || offset < kPage || offset > peer_size_ || job.total > peer_size_ - offset) {
      close("side channel: the peer granted shared memory outside its arena", true);
      return -1;
    }
    uint8_t* dst = peer_base_ + offset;
    // pages of the arena this end has not touched yet: fault them in one call, not one by one
    madvise(dst, round_up(job.total, kPage), MADV_POPULATE_WRITE);
    for (const iovec& v : job.segments) {
      std::memcpy(dst, v.iov_base, v.iov_len);
      dst += v.iov_len;
    }
    job.head[1] |= kShm;
    wr32(&job.head[20], static_cast<uint32_t>(offset / kPage));
    return write_bytes(job.head) ? 1 : -1;
  }

  // ---- reader

  bool read_exact(void* p, size_t n, std::string* why) {
    uint8_t* at = static_cast<uint8_t*>(p);
    while (n) {
      const ssize_t r = recv(fd_, at, n, MSG_WAITALL);
      if (r > 0) {
        at += r;
        n -= static_cast<size_t>(r);
        continue;
      }
      if (r == 0) {
        *why = "side channel closed";
        return false;
      }
      if (errno == EINTR) continue;
      *why = errno_text("side channel", errno);
      return false;
    }
    return true;
  }

  void read_loop() {
    std::string why;
    bool protocol = false;
    std::vector<uint8_t> name_buf;
    for (;;) {
      uint8_t h[kHeadBytes];
      if (!read_exact(h, kHeadBytes, &why)) break;
      const uint8_t kind = h[0];
      const uint8_t flags = h[1];
      const uint16_t name_len = rd16(h + 2);
      const uint32_t call_id = rd32(h + 4);
      const double len = rdf64(h + 8);
      const bool control = kind >= kShmOffer && kind <= kShmDeny;
      if (!control && (kind < kFirstKind || kind > kLastKind)) {
        why = "side channel: unknown frame kind " + std::to_string(kind);
        protocol = true;
        break;
      }
      if (!(flags & kChunked) || rd32(h + 16) != 0) {
        why = "side channel: frame head is not a side-channel head";
        protocol = true;
        break;
      }
      if (!(len >= 0 && len <= static_cast<double>(opt_.max_payload) && std::floor(len) == len)) {
        why = "side channel: bad payload length " + std::to_string(len);
        protocol = true;
        break;
      }
      const size_t length = static_cast<size_t>(len);
      name_buf.resize(round_up(name_len, 8));
      if (!name_buf.empty() && !read_exact(name_buf.data(), name_buf.size(), &why)) break;
      std::string name(reinterpret_cast<const char*>(name_buf.data()), name_len);
      if (control) {
        if (!handle_control(kind, call_id, name, length, &why, &protocol)) break;
        continue;
      }
      Block block;
      bool via_shm = false;
      if (flags & kShm) {
        const size_t offset = static_cast<size_t>(rd32(h + 20)) * kPage;
        if (!own_ || !own_->claim(offset, length)) {
          why = "side channel: a shared-memory payload this end did not grant";
          protocol = true;
          break;
        }
        std::shared_ptr<Arena> arena = own_;
        madvise(arena->base() + offset, round_up(length, kPage), MADV_POPULATE_READ);
        block.data = arena->base() + offset;
        block.length = length;
        block.release = [arena, offset, length] { arena->release(offset, length); };
        via_shm = true;
      } else if (length) {
        size_t capacity = 0;
        void* p = Pool::instance().take(length, &capacity);
        if (!p) {
          why = "side channel: cannot allocate " + std::to_string(length) + " bytes for a payload";
          break;
        }
        if (!read_exact(p, length, &why)) {
          Pool::instance().give(p, capacity);
          break;
        }
        block.data = p;
        block.length = length;
        block.release = [p, capacity] { Pool::instance().give(p, capacity); };
      }
      events_->message(kind, call_id, std::move(name), std::move(block), via_shm);
    }
    close(why, protocol);
    std::string final_why;
    bool final_protocol;
    {
      std::lock_guard<std::mutex> lock(mu_);
      final_why = why_;
      final_protocol = protocol_;
      grant_state_ = Grant::Denied;
      cv_.notify_all();
    }
    events_->closed(final_why, final_protocol);
  }

  bool handle_control(uint8_t kind, uint32_t call_id, const std::string& name, size_t length, std::string* why,
                      bool* protocol) {
    const size_t expect = kind == kShmOffer ? 24 : kind == kShmDeny ? 0 : 8;
    if (length != expect) {
      *why = "side channel: control frame " + std::to_string(kind) + " with " + std::to_string(length) + " payload bytes";
      *protocol = true;
      return false;
    }
    uint8_t p[24] = {};
    if (length && !read_exact(p, length, why)) return false;
    switch (kind) {
      case kShmOffer:
        map_peer_arena(name, p, rd64(p + 16));
        return true;
      case kShmAsk: {
        size_t offset = 0;
        const uint64_t want = rd64(p);
        std::vector<uint8_t> reply;
        if (own_ && want <= opt_.max_payload && own_->grant(static_cast<size_t>(want), &offset)) {
          uint8_t off[8];
          wr64(off, offset);
          reply = control_frame(kShmGrant, call_id, "", off, 8);
        } else {
          reply = control_frame(kShmDeny, call_id, "", nullptr, 0);
        }
        std::lock_guard<std::mutex> lock(mu_);
        control_.push_back(std::move(reply));
        cv_.notify_all();
        return true;
      }
      case kShmGrant:
      case kShmDeny: {
        std::lock_guard<std::mutex> lock(mu_);
        if (grant_state_ != Grant::Waiting || call_id != ask_) {
          *why = "side channel: an answer to a shared-memory request that was not made";
          *protocol = true;
          return false;
        }
        grant_state_ = kind == kShmGrant ? Grant::Granted : Grant::Denied;
        grant_offset_ = static_cast<size_t>(rd64(p));
        cv_.notify_all();
        return true;
      }
      default:
        return false;
    }
  }

  // The peer's offer: map its arena if it is on this host (the nonce proves it); otherwise TCP.
  void map_peer_arena(const std::string& where, const uint8_t* nonce, uint64_t size) {
    if (!opt_.shm || peer_base_ || size < 2 * kPage || size > (1ull << 40)) return;
    const size_t colon = where.find(':');
    if (colon == std::string::npos) return;
    const std::string path = "/proc/" + where.substr(0, colon) + "/fd/" + where.substr(colon + 1);
    if (where.find('/') != std::string::npos || where.find("..") != std::string::npos) return;
    const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st{};
    void* base = MAP_FAILED;
    if (fstat(fd, &st) == 0 && static_cast<uint64_t>(st.st_size) >= size) {
      base = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    }
    ::close(fd);
    if (base == MAP_FAILED) return;
    if (std::memcmp(base, nonce, 16) != 0) {  // not the peer's arena: some other process's file
      munmap(base, static_cast<size_t>(size));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    peer_base_ = static_cast<uint8_t*>(base);
    peer_size_ = static_cast<size_t>(size);
    peer_shm_.store(true);
  }

  enum class Grant { Waiting, Granted, Denied };

  int fd_;
  LinkOptions opt_;
  std::string local_, remote_;
  std::shared_ptr<Events> events_;
  std::thread reader_, writer_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::deque<std::vector<uint8_t>> control_;
  bool started_ = false;
  bool closing_ = false;
  bool writing_ = false;  // the writer thread, or a caller inline (enqueue), is writing to the socket
  std::string why_;
  bool protocol_ = false;
  uint64_t next_seq_ = 1;
  std::shared_ptr<Arena> own_;
  uint8_t* peer_base_ = nullptr;
  size_t peer_size_ = 0;
  std::atomic<bool> peer_shm_{false};
  uint32_t ask_ = 0;
  Grant grant_state_ = Grant::Denied;
  size_t grant_offset_ = 0;
};

// ---- listener ---------------------------------------------------------------------------------

class ListenerImpl final : public Listener {
 public:
  ListenerImpl(int fd, int wake, int port) : fd_(fd), wake_(wake), port_(port) {}
  ~ListenerImpl() override {
    ::close(fd_);
    ::close(wake_);
  }

  int port() const override { return port_; }

  void cancel() override {
    const uint64_t one = 1;
    ssize_t ignored = write(wake_, &one, sizeof one);
    (void)ignored;
  }

  int accept_one(const uint8_t token[24], int timeout_ms, std::string* error) override {
    struct Pending {
      int fd;
      uint8_t hello[kHelloBytes];
      size_t got;
    };
    std::vector<Pending> pending;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    auto drop_all = [&] {
      for (const Pending& p : pending) ::close(p.fd);
      pending.clear();
    };
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) {
        drop_all();
        *error = "no connection with the right token within " + std::to_string(timeout_ms) + " ms";
        return -1;
      }
      std::vector<pollfd> fds{{wake_, POLLIN, 0}, {fd_, POLLIN, 0}};
      for (const Pending& p : pending) fds.push_back({p.fd, POLLIN, 0});
      const int n = poll(fds.data(), fds.size(), static_cast<int>(std::min<long long>(left, INT_MAX)));
      if (n < 0) {
        if (errno == EINTR) continue;
        drop_all();
        *error = errno_text("poll", errno);
        return -1;
      }
      if (fds[0].revents) {
        drop_all();
        *error = "cancelled";
        return -1;
      }
      for (size_t i = pending.size(); i-- > 0;) {
        if (!fds[i + 2].revents) continue;
        Pending& p = pending[i];
        const ssize_t r = recv(p.fd, p.hello + p.got, kHelloBytes - p.got, MSG_DONTWAIT);
        bool drop = r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
        if (r > 0) p.got += static_cast<size_t>(r);
        if (!drop && p.got == kHelloBytes) {
          const bool ok = rd32(p.hello) == kHelloMagic && rd32(p.hello + 4) == 1 && token_equal(p.hello + 8, token);
          if (ok && set_blocking(p.fd)) {
            const int good = p.fd;
            pending.erase(pending.begin() + static_cast<long>(i));
            drop_all();
            return good;
          }
          drop = true;
        }
        if (drop) {
          ::close(p.fd);
          pending.erase(pending.begin() + static_cast<long>(i));
        }
      }
      if (fds[1].revents & POLLIN) {
        const int c = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c >= 0) pending.push_back(Pending{c, {}, 0});
      }
    }
  }

 private:
  int fd_;
  int wake_;
  int port_;
};

}  // namespace

std::unique_ptr<Link> make_link(int fd, const LinkOptions& options) { return std::make_unique<LinkImpl>(fd, options); }

std::unique_ptr<Listener> listen_on(const std::string& host, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), "0", &hints, &res);
  if (gai != 0) {
    *error = std::string("cannot resolve ") + host + ": " + gai_strerror(gai);
    return nullptr;
  }
  int fd = -1;
  std::string why = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      why = errno_text("socket", errno);
      continue;
    }
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 16) == 0) break;
    why = errno_text("listen", errno);
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    *error = "cannot listen on " + host + ": " + why;
    return nullptr;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  const int port = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                            : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  const int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    *error = errno_text("eventfd", errno);
    ::close(fd);
    return nullptr;
  }
  return std::make_unique<ListenerImpl>(fd, wake, port);
}

int connect_to(const std::string& host, int port, const uint8_t token[24], int timeout_ms, int cancel_fd,
               std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  const int gai = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (gai != 0) {
    *error = "cannot resolve " + host + ": " + gai_strerror(gai);
    return -1;
  }
  const std::string where = host + ":" + service;
  int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
  if (fd < 0) {
    *error = errno_text("socket", errno);
    freeaddrinfo(res);
    return -1;
  }
  int rc = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0 && errno != EINPROGRESS) {
    *error = errno_text(("connect to " + where).c_str(), errno);
    ::close(fd);
    return -1;
  }
  if (rc != 0) {
    pollfd fds[2] = {{fd, POLLOUT, 0}, {cancel_fd, POLLIN, 0}};
    for (;;) {
      rc = poll(fds, cancel_fd >= 0 ? 2 : 1, timeout_ms);
      if (rc < 0 && errno == EINTR) continue;
      break;
    }
    if (rc == 0 || (cancel_fd >= 0 && fds[1].revents)) {
      *error = rc == 0 ? "side channel connect to " + where + " timed out" : "cancelled";
      ::close(fd);
      return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (rc < 0 || soerr != 0) {
      *error = errno_text(("connect to " + where).c_str(), rc < 0 ? errno : soerr);
      ::close(fd);
      return -1;
    }
  }
  if (!set_blocking(fd)) {
    *error = errno_text("fcntl", errno);
    ::close(fd);
    return -1;
  }
  uint8_t hello[kHelloBytes];
  wr32(hello, kHelloMagic);
  wr32(hello + 4, 1);
  std::memcpy(hello + 8, token, 24);
  if (!write_all(fd, {iovec{hello, sizeof hello}}, error)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

size_t pooled_bytes() { return Pool::instance().cached(); }

void trim_pool() { Pool::instance().trim(); }

}  // namespace transport
}  // namespace psrpc
