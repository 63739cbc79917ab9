// Plain C++ test of the native bulk transport (no N-API), run by test/native/transport.test.ts,
// under valgrind where it is installed: two links over loopback in one process echo messages of
// several sizes over TCP and through shared memory, check every byte, inject garbage, and close
// with messages in flight. Exits 0 when every check held; prints what failed otherwise.
//   link_test [rounds] [max_bytes] [--bench]
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>

#include "psrpc/transport.h"

namespace t = psrpc::transport;

namespace {

int failures = 0;
bool timing = false;  // --bench: payloads are neither filled nor compared inside the timed loop
#define CHECK(c, ...)                                        \
  do {                                                       \
    if (!(c)) {                                              \
      failures++;                                            \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                     \
      std::fprintf(stderr, "\n");                            \
    }                                                        \
  } while (0)

struct Received {
  uint8_t kind;
  uint32_t call_id;
  std::string name;
  t::Block block;
  bool shm;
};

// Collects a link's events for the test thread to wait on.
struct Inbox : t::Events {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Received> messages;
  std::deque<std::pair<uint64_t, bool>> sents;
  bool is_closed = false;
  std::string why;
  bool protocol = false;

  void message(uint8_t kind, uint32_t call_id, std::string name, t::Block payload, bool via_shm) override {
    std::lock_guard<std::mutex> l(mu);
    messages.push_back(Received{kind, call_id, std::move(name), std::move(payload), via_shm});
    cv.notify_all();
  }
  void sent(uint64_t seq, bool ok) override {
    std::lock_guard<std::mutex> l(mu);
    sents.emplace_back(seq, ok);
    cv.notify_all();
  }
  void closed(const std::string& w, bool p) override {
    std::lock_guard<std::mutex> l(mu);
    is_closed = true;
    why = w;
    protocol = p;
    cv.notify_all();
  }
  bool next(Received* out) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return !messages.empty() || is_closed; });
    if (messages.empty()) return false;
    *out = std::move(messages.front());
    messages.pop_front();
    return true;
  }
  void wait_closed() {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return is_closed; });
  }
};

std::vector<uint8_t> head_for(uint8_t kind, uint32_t call_id, const std::string& name, size_t len) {
  std::vector<uint8_t> h(t::kHeadBytes + (name.size() + 7) / 8 * 8, 0);
  h[0] = kind;
  h[1] = t::kChunked;
  const uint16_t nl = static_cast<uint16_t>(name.size());
  std::memcpy(&h[2], &nl, 2);
  std::memcpy(&h[4], &call_id, 4);
  const double aux = static_cast<double>(len);
  std::memcpy(&h[8], &aux, 8);
  std::memcpy(&h[t::kHeadBytes], name.data(), name.size());
  return h;
}

struct Pair {
  std::unique_ptr<t::Link> a, b;
  std::shared_ptr<Inbox> ia = std::make_shared<Inbox>(), ib = std::make_shared<Inbox>();
};

Pair connect_pair(bool shm, size_t max_bytes) {
  std::string error;
  auto listener = t::listen_on("127.0.0.1", &error);
  CHECK(listener, "listen: %s", error.c_str());
  uint8_t token[24];
  for (int i = 0; i < 24; i++) token[i] = static_cast<uint8_t>(i * 7 + 1);
  int accepted = -1;
  std::string accept_error;
  std::thread acceptor([&] { accepted = listener->accept_one(token, 30000, &accept_error); });
  // a connection with the wrong token first: it must be dropped, and the right one accepted
  uint8_t wrong[24] = {};
  std::string e1;
  const int bad = t::connect_to("127.0.0.1", listener->port(), wrong, 30000, -1, &e1);
  const int good = t::connect_to("127.0.0.1", listener->port(), token, 30000, -1, &error);
  acceptor.join();
  CHECK(good >= 0 && accepted >= 0, "connect: %s / accept: %s", error.c_str(), accept_error.c_str());
  if (bad >= 0) close(bad);
  t::LinkOptions o;
  o.shm = shm;
  o.shm_bytes = 3 * max_bytes + (1u << 20);
  o.socket_buffer = 4 << 20;
  Pair p;
  p.a = t::make_link(good, o);
  p.b = t::make_link(accepted, o);
  p.a->start(p.ia);
  p.b->start(p.ib);
  // the offers cross in the background: wait for them (no deadline here; the runner has one)
  while (shm && !(p.a->peer_shm() && p.b->peer_shm())) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return p;
}

void fill(std::vector<uint8_t>& v, uint32_t seed) {
  for (size_t i = 0; i < v.size(); i++) v[i] = static_cast<uint8_t>((i * 2654435761u + seed) >> 13);
}

// a sends `size` bytes in two segments; b echoes the block back; a checks every byte.
void echo(Pair& p, size_t size, uint32_t id, bool expect_shm) {
  static std::vector<uint8_t> data;
  if (data.size() != size || !timing) {
    data.assign(size, 0);
    fill(data, id);
  }
  const size_t half = size / 3;
  auto head = head_for(1, id, "echo", size);
  const uint64_t seq = p.a->send(head.data(), head.size(), {iovec{data.data(), half}, iovec{data.data() + half, size - half}});
  CHECK(seq != 0, "send refused");
  Received r;
  CHECK(p.ib->next(&r), "b got no message: %s", p.ib->why.c_str());
  CHECK(r.kind == 1 && r.call_id == id && r.name == "echo" && r.block.length == size, "request head %u %u %zu", r.kind, r.call_id, r.block.length);
  if (size >= t::kShmMinBytes) CHECK(r.shm == expect_shm, "request of %zu bytes via shm=%d, expected %d", size, r.shm, expect_shm);
  auto back = head_for(2, id, "", size);
  const uint64_t seq2 = p.b->send(back.data(), back.size(), {iovec{r.block.data, r.block.length}});
  Received r2;
  CHECK(p.ia->next(&r2), "a got no reply: %s", p.ia->why.c_str());
  // b's block may go back only once it has been sent: wait for sent(seq2)
  {
    std::unique_lock<std::mutex> l(p.ib->mu);
    p.ib->cv.wait(l, [&] { for (auto& s : p.ib->sents) if (s.first == seq2) return true; return p.ib->is_closed; });
  }
  if (r.block.release) r.block.release();
  CHECK(r2.block.length == size && (timing || size == 0 || std::memcmp(r2.block.data, data.data(), size) == 0), "echo of %zu bytes differs", size);
  if (r2.block.release) r2.block.release();
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 3;
  const size_t max_bytes = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : (8u << 20);
  const bool bench = argc > 3 && std::string(argv[3]) == "--bench";
  if (bench) {
    for (bool shm : {false, true}) {
      Pair p = connect_pair(shm, bench ? (64u << 20) : max_bytes);
      for (size_t mb : {1, 16, 64}) {
        const size_t size = mb << 20;
        timing = false;
        echo(p, size, 1, shm);  // filled and compared
        timing = true;
        const int reps = std::max<int>(3, static_cast<int>(256 / mb));
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; i++) echo(p, size, static_cast<uint32_t>(i + 2), shm);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("%s echo %zu MB: %.2f GB/s\n", shm ? "shm" : "tcp", mb, 2.0 * mb * reps / 1024 / s);
      }
      p.a->close("done");
      p.b->close("done");
      p.a->join();
      p.b->join();
    }
    t::trim_pool();
    return failures ? 1 : 0;
  }
  for (bool shm : {false, true}) {
    Pair p = connect_pair(shm, bench ? (64u << 20) : max_bytes);
    for (int round = 0; round < rounds; round++) {
      for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{65536}, size_t{300000}, size_t{1} << 20, max_bytes}) {
        echo(p, size, static_cast<uint32_t>(round * 100 + size % 97), shm);
      }
    }
    // messages still queued when the link closes are reported as failed, none lost silently
    std::vector<uint8_t> big(max_bytes, 7);
    auto head = head_for(1, 9, "x", big.size());
    uint64_t last = 0;
    for (int i = 0; i < 4; i++) last = p.a->send(head.data(), head.size(), {iovec{big.data(), big.size()}});
    p.a->close("test closes");
    p.ia->wait_closed();
    p.a->join();
    size_t reported = 0;
    {
      std::lock_guard<std::mutex> l(p.ia->mu);
      for (auto& s : p.ia->sents) if (s.first >= last - 3) reported++;
    }
    CHECK(reported == 4, "%zu of 4 queued messages reported", reported);
    CHECK(p.ia->why == "test closes", "close reason: %s", p.ia->why.c_str());
    p.ib->wait_closed();
    p.b->join();
    for (auto& m : p.ib->messages) if (m.block.release) m.block.release();
    CHECK(p.a->send(head.data(), head.size(), {}) == 0, "send after close accepted");
  }
  {
    // garbage: the receiving link closes with a protocol error
    Pair p = connect_pair(true, 1u << 20);
    uint8_t junk[64];
    std::memset(junk, 0xee, sizeof junk);
    p.a->send_raw(junk, sizeof junk);
    p.ib->wait_closed();
    CHECK(p.ib->protocol && p.ib->why.find("unknown frame kind") != std::string::npos, "garbage: %s", p.ib->why.c_str());
    p.b->join();
    p.ia->wait_closed();
    p.a->join();
  }
  t::trim_pool();
  CHECK(t::pooled_bytes() == 0, "pool holds %zu bytes", t::pooled_bytes());
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("transport: all checks passed\n");
  return failures ? 1 : 0;
}
