// The native bulk transport: the side channel of src/rpc/bulk-socket.ts, driven by threads of its
// own instead of the JavaScript thread.
//
// A Link owns one connected TCP socket and two threads. The writer sends each message with
// sendmsg straight from the caller's memory (an iovec per segment; nothing is copied on the way
// out); the reader receives each payload with one recv straight into the buffer it is delivered
// in (a pooled, page-aligned block), so a message costs the kernel's two copies and nothing more.
//
// Same host: right after connecting, each end offers the other a shared-memory arena (a memfd)
// that the other maps through /proc/<pid>/fd/<fd>; the 16-byte nonce inside it, compared with the
// one sent over the socket, proves both ends share one kernel (a handshake, never assumed). From
// then on a payload from kShmMinBytes on is sent as: ask the receiver for room in its arena, copy
// the payload there (the one copy), send only the head. The receiver hands that region out as the
// payload itself and frees it when its user drops it. No room, no arena, or any failure: TCP.
//
// Wire format (little endian, the frame head of src/rpc/frame.ts): 24-byte head (kind, flags =
// kChunked [| kShm], name length, call id, f64 aux = payload length, u32 0, u32 reserved = the
// shm offset in pages), name and zero padding to 8, then the payload (unless kShm).
// Control kinds (kShmOffer..kShmDeny) never leave this file; the JavaScript SideLink skips them.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace psrpc {
namespace transport {

constexpr size_t kHeadBytes = 24;
constexpr size_t kHelloBytes = 8 + 24;
constexpr uint32_t kHelloMagic = 0x53525350;  // 'PSRS'
constexpr uint8_t kChunked = 1;
constexpr uint8_t kShm = 2;
// Message kinds of frame.ts that may travel on a link (Request .. SideReady).
constexpr uint8_t kFirstKind = 1;
constexpr uint8_t kLastKind = 7;
// Control kinds, handled inside the link.
constexpr uint8_t kShmOffer = 0x40;  // name "pid:fd", payload nonce[16] + u64 arena bytes
constexpr uint8_t kShmAsk = 0x41;    // call id = ask number, payload u64 length
constexpr uint8_t kShmGrant = 0x42;  // call id = ask number, payload u64 offset
constexpr uint8_t kShmDeny = 0x43;   // call id = ask number
/** Payloads below this size go over TCP even when an arena is mapped (the ask costs a round trip). */
constexpr size_t kShmMinBytes = 256 * 1024;

/** Payload memory handed to the user; `release` runs exactly once, when the user drops it. */
struct Block {
  void* data = nullptr;
  size_t length = 0;
  std::function<void()> release;
};

/**
 * What a link reports, on the link's own threads (message and closed on the reader, sent on the
 * writer: two may run at once). closed() is reported once, last of the reader's events; the
 * writer may still report sent(seq, false) for queued messages after it, until join().
 */
struct Events {
  virtual ~Events() = default;
  virtual void message(uint8_t kind, uint32_t call_id, std::string name, Block payload, bool via_shm) = 0;
  /** Message `seq` was handed to the kernel (or copied into the peer's arena), or failed. */
  virtual void sent(uint64_t seq, bool ok) = 0;
  /** The link is closed; `protocol` when the peer sent bytes that are not messages. Called once. */
  virtual void closed(const std::string& why, bool protocol) = 0;
};

struct LinkOptions {
  bool shm = true;             // offer our arena and use the peer's (PSRPC_SHM=0: off)
  size_t shm_bytes = 512u << 20;  // size of the arena we offer
  size_t max_payload = 1ull << 32;
  // SO_SNDBUF / SO_RCVBUF (PSRPC_SOCKET_BUFFER; 0 leaves the kernel's autotuning). 4 MiB: a 16 MB
  // echo over loopback ran at 0.9-1.1 GB/s autotuned and 1.3-1.7 GB/s with it (the kernel caps it
  // at net.core.[rw]mem_max).
  int socket_buffer = 4 << 20;
};

class Link {
 public:
  virtual ~Link() = default;
  /** Starts the threads; events go to `events` until closed() has been called. */
  virtual void start(std::shared_ptr<Events> events) = 0;
  /**
   * Queues one message: `head` (the frame head and name, copied) then `segments` (referenced:
   * the memory must stay valid until sent(seq) is reported). Returns seq, or 0 if closed.
   */
  virtual uint64_t send(const uint8_t* head, size_t head_len, std::vector<iovec> segments) = 0;
  /** Queues raw bytes as they are (tests inject garbage with this). */
  virtual uint64_t send_raw(const uint8_t* bytes, size_t len) = 0;
  /** Closes the socket; the threads wind down and closed(why) is reported. Idempotent. */
  virtual void close(const std::string& why) = 0;
  /** Waits for both threads to end (after close); afterwards no event is reported any more. */
  virtual void join() = 0;
  /** Whether payloads to the peer go through its shared-memory arena. */
  virtual bool peer_shm() const = 0;
  virtual std::string local_address() const = 0;
  virtual std::string remote_address() const = 0;
};

/** Wraps a connected socket (the hello already exchanged); takes ownership of `fd`. */
std::unique_ptr<Link> make_link(int fd, const LinkOptions& options);

/**
 * Listens on host, port 0. accept_one() then waits (at most timeout_ms) for the first connection
 * whose hello carries `token`, dropping every other; returns its fd, or -1 with `error` set.
 */
class Listener {
 public:
  virtual ~Listener() = default;
  virtual int port() const = 0;
  virtual int accept_one(const uint8_t token[24], int timeout_ms, std::string* error) = 0;
  /** Makes a waiting accept_one() return -1 at once; idempotent. */
  virtual void cancel() = 0;
};

std::unique_ptr<Listener> listen_on(const std::string& host, std::string* error);

/**
 * Connects to host:port, sends the hello with `token`; returns the fd or -1 with `error` set.
 * A readable `cancel_fd` (an eventfd; -1: none) makes it give up at once.
 */
int connect_to(const std::string& host, int port, const uint8_t token[24], int timeout_ms, int cancel_fd,
               std::string* error);

/** Bytes of pooled receive blocks currently cached (tests check that nothing is held). */
size_t pooled_bytes();
/** Frees every cached receive block. */
void trim_pool();

}  // namespace transport
}  // namespace psrpc
