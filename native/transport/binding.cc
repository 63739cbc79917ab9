// N-API surface of the native bulk transport (psrpc_transport.node), used by src/rpc/native-link.ts.
//
//   listen(host) -> Listener { port, accept(token, timeoutMs, cb(err, link)), close() }
//   connect(host, port, token, timeoutMs, cb(err, link))
//   Link { start(onEvent), send(head, segments) -> seq, sendRaw(bytes) -> seq, close(why), join(),
//          peerShm, localAddress, remoteAddress }
//   pooledBytes(), trimPool()
//
// onEvent(0, kind, callId, name, payload: ArrayBuffer, viaShm) | (1, seq, ok) | (2, why, protocol).
// Received payloads are external ArrayBuffers over the block they were received into; the block
// goes back (to the pool, or to the arena) when the ArrayBuffer is collected. Segments passed to
// send() are referenced, not copied: the caller keeps them alive until (1, seq, ...) arrives.
// Accept and connect run on threads of their own (they can wait 30 s; libuv's pool has 4 threads).
// Everything still running when the environment is torn down is cancelled and joined.
#include <napi.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>
#include <string>
#include <thread>

#include "psrpc/transport.h"

namespace {

namespace t = psrpc::transport;

t::LinkOptions options_from_env() {
  t::LinkOptions o;
  const char* shm = std::getenv("PSRPC_SHM");
  o.shm = !(shm && std::string(shm) == "0");
  if (const char* b = std::getenv("PSRPC_SHM_BYTES")) {
    const long long v = std::atoll(b);
    if (v > 0) o.shm_bytes = static_cast<size_t>(v);
  }
  if (const char* b = std::getenv("PSRPC_SOCKET_BUFFER")) o.socket_buffer = std::atoi(b);
  return o;
}

struct Event {
  explicit Event(int t) : type(t) {}
  int type;
  uint8_t kind = 0;
  uint32_t call_id = 0;
  std::string text;
  t::Block block;
  bool flag = false;
  uint64_t seq = 0;
};

// A delivered payload's memory, until it is released: by release() (the ArrayBuffer is detached
// first, so no view can reach the memory afterwards) or by the ArrayBuffer's finalizer.
struct Payload {
  std::function<void()> release;
  bool released = false;
};
class JsLink;
class JsListener;
struct ConnectTask;

// Everything with a thread, so that environment teardown can stop them all.
struct Live {
  std::mutex mu;
  std::set<JsLink*> links;
  std::set<JsListener*> listeners;
  std::set<ConnectTask*> connects;
};

// What one environment (the main thread, or a worker thread) has of this addon: the addon may be
// loaded in several, and each one's objects, payloads and teardown are its own. Never freed: it is
// a few hundred bytes per environment, and objects finalized during teardown may still reach it.
struct PerEnv {
  Napi::FunctionReference link_ctor;
  Napi::FunctionReference listener_ctor;
  Live live;
  std::unordered_map<void*, Payload*> held;  // payloads still held by JS, by data pointer (JS thread only)
};
void keep(Napi::Env, PerEnv*) {}
PerEnv& per(Napi::Env env) { return *env.GetInstanceData<PerEnv>(); }

void deliver(Napi::Env env, Napi::Function callback, Event* e) {
  std::unique_ptr<Event> ev(e);
  if (!env || !callback) {  // torn down: give the memory back
    if (ev->block.release) ev->block.release();
    return;
  }
  try {
    if (ev->type == 0) {
      Napi::ArrayBuffer ab;
      if (ev->block.length) {
        // V8 counts an external backing store's length as external memory itself (as for its own
        // ArrayBuffers): adjusting it here too doubled the full GCs of a 16 MB echo (65 vs 20).
        auto* payload = new Payload{std::move(ev->block.release)};
        PerEnv* d = &per(env);
        d->held[ev->block.data] = payload;
        ab = Napi::ArrayBuffer::New(env, ev->block.data, ev->block.length, [d](Napi::Env, void* data, Payload* p) {
          if (!p->released) {
            auto it = d->held.find(data);
            if (it != d->held.end() && it->second == p) d->held.erase(it);
            p->release();
          }
          delete p;
        }, payload);
      } else {
        if (ev->block.release) ev->block.release();
        ab = Napi::ArrayBuffer::New(env, 0);
      }
      callback.Call({Napi::Number::New(env, 0), Napi::Number::New(env, ev->kind), Napi::Number::New(env, ev->call_id),
                     Napi::String::New(env, ev->text), ab, Napi::Boolean::New(env, ev->flag)});
    } else if (ev->type == 1) {
      callback.Call({Napi::Number::New(env, 1), Napi::Number::New(env, static_cast<double>(ev->seq)), Napi::Boolean::New(env, ev->flag)});
    } else {
      callback.Call({Napi::Number::New(env, 2), Napi::String::New(env, ev->text), Napi::Boolean::New(env, ev->flag)});
    }
  } catch (const Napi::Error& err) {
    err.ThrowAsJavaScriptException();  // an exception in the JS handler: reported as uncaught
  }
}

class JsEvents final : public t::Events {
 public:
  explicit JsEvents(Napi::ThreadSafeFunction tsfn) : tsfn_(tsfn) {}
  void message(uint8_t kind, uint32_t call_id, std::string name, t::Block payload, bool via_shm) override {
    auto* e = new Event(0);
    e->kind = kind;
    e->call_id = call_id;
    e->text = std::move(name);
    e->block = std::move(payload);
    e->flag = via_shm;
    post(e);
  }
  void sent(uint64_t seq, bool ok) override {
    auto* e = new Event(1);
    e->seq = seq;
    e->flag = ok;
    post(e);
  }
  void closed(const std::string& why, bool protocol) override {
    auto* e = new Event(2);
    e->text = why;
    e->flag = protocol;
    post(e);
  }

 private:
  void post(Event* e) {
    if (tsfn_.NonBlockingCall(e, deliver) != napi_ok) {
      if (e->block.release) e->block.release();
      delete e;
    }
  }
  Napi::ThreadSafeFunction tsfn_;
};


// The bytes of a typed array or DataView, in place; false for anything else.
bool bytes_of(Napi::Value v, uint8_t** data, size_t* len) {
  if (v.IsTypedArray()) {
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    *data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    *len = ta.ByteLength();
    return true;
  }
  if (v.IsDataView()) {
    Napi::DataView dv = v.As<Napi::DataView>();
    *data = static_cast<uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
    *len = dv.ByteLength();
    return true;
  }
  return false;
}

// A side-channel token argument (24 bytes), copied; throws a TypeError naming `fn` otherwise.
std::array<uint8_t, 24> token_of(Napi::Env env, Napi::Value v, const char* fn) {
  uint8_t* p = nullptr;
  size_t n = 0;
  if (!bytes_of(v, &p, &n) || n != 24) throw Napi::TypeError::New(env, std::string(fn) + ": token must be 24 bytes");
  std::array<uint8_t, 24> tok{};
  std::memcpy(tok.data(), p, 24);
  return tok;
}

class JsLink : public Napi::ObjectWrap<JsLink> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeLink", {
        InstanceMethod<&JsLink::Start>("start"),
        InstanceMethod<&JsLink::Send>("send"),
        InstanceMethod<&JsLink::SendRaw>("sendRaw"),
        InstanceMethod<&JsLink::Close>("close"),
        InstanceMethod<&JsLink::Join>("join"),
        InstanceAccessor<&JsLink::PeerShm>("peerShm"),
        InstanceAccessor<&JsLink::Local>("localAddress"),
        InstanceAccessor<&JsLink::Remote>("remoteAddress"),
    });
  }

  /** A JS object owning `fd` (a connected socket, hello done). */
  static Napi::Object Wrap(Napi::Env env, int fd) {
    Napi::Object o = per(env).link_ctor.New({});
    JsLink* self = Unwrap(o);
    self->link_ = t::make_link(fd, options_from_env());
    return o;
  }

  explicit JsLink(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsLink>(info), env_data_(&per(info.Env())) {}

  ~JsLink() override { Stop(); }

  /** Closes and joins (the JS thread; cheap: the socket is shut down, so both threads end now). */
  void Stop() {
    if (!link_) return;
    link_->close("agent shut down");
    link_->join();
    Untrack();
  }

 private:
  void Untrack() {
    if (tracked_) {
      std::lock_guard<std::mutex> lock(env_data_->live.mu);
      env_data_->live.links.erase(this);
      tracked_ = false;
    }
    if (tsfn_started_) {
      tsfn_.Release();
      tsfn_started_ = false;
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!link_) throw Napi::Error::New(env, "NativeLink: not connected");
    if (tsfn_started_) throw Napi::Error::New(env, "NativeLink: started already");
    if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "NativeLink.start: onEvent must be a function");
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "psrpc-bulk-link", 0, 1);
    tsfn_started_ = true;
    {
      std::lock_guard<std::mutex> lock(env_data_->live.mu);
      env_data_->live.links.insert(this);
      tracked_ = true;
    }
    link_->start(std::make_shared<JsEvents>(tsfn_));
    return env.Undefined();
  }

  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* head = nullptr;
    size_t head_len = 0;
    if (!bytes_of(info[0], &head, &head_len)) throw Napi::TypeError::New(env, "NativeLink.send: head must be a Uint8Array");
    if (!info[1].IsArray()) throw Napi::TypeError::New(env, "NativeLink.send: segments must be an array");
    Napi::Array segs = info[1].As<Napi::Array>();
    std::vector<iovec> iov;
    iov.reserve(segs.Length());
    for (uint32_t i = 0; i < segs.Length(); i++) {
      uint8_t* p = nullptr;
      size_t n = 0;
      if (!bytes_of(segs.Get(i), &p, &n)) throw Napi::TypeError::New(env, "NativeLink.send: segment " + std::to_string(i) + " is not an ArrayBufferView");
      if (n) iov.push_back(iovec{p, n});
    }
    if (!link_) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, static_cast<double>(link_->send(head, head_len, std::move(iov))));
  }

  Napi::Value SendRaw(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint8_t* p = nullptr;
    size_t n = 0;
    if (!bytes_of(info[0], &p, &n)) throw Napi::TypeError::New(env, "NativeLink.sendRaw: bytes must be a Uint8Array");
    if (!link_) return Napi::Number::New(env, 0);
    return Napi::Number::New(env, static_cast<double>(link_->send_raw(p, n)));
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (link_) link_->close(info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "side channel closed");
    return info.Env().Undefined();
  }

  Napi::Value Join(const Napi::CallbackInfo& info) {
    if (link_) {
      link_->join();
      Untrack();
    }
    return info.Env().Undefined();
  }

  Napi::Value PeerShm(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), link_ && link_->peer_shm()); }
  Napi::Value Local(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), link_ ? link_->local_address() : ""); }
  Napi::Value Remote(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), link_ ? link_->remote_address() : ""); }

  PerEnv* env_data_;
  std::unique_ptr<t::Link> link_;
  Napi::ThreadSafeFunction tsfn_;
  bool tsfn_started_ = false;
  bool tracked_ = false;
};

// The result of an accept or connect thread: an fd, or an error.
struct Outcome {
  int fd;
  std::string error;
};

void settle(Napi::Env env, Napi::Function cb, Outcome* o) {
  std::unique_ptr<Outcome> out(o);
  if (!env || !cb) {
    if (out->fd >= 0) ::close(out->fd);
    return;
  }
  try {
    if (out->fd < 0) cb.Call({Napi::Error::New(env, out->error).Value()});
    else cb.Call({env.Null(), JsLink::Wrap(env, out->fd)});
  } catch (const Napi::Error& err) {
    err.ThrowAsJavaScriptException();
  }
}

class JsListener : public Napi::ObjectWrap<JsListener> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeListener", {
        InstanceMethod<&JsListener::Accept>("accept"),
        InstanceMethod<&JsListener::Close>("close"),
        InstanceAccessor<&JsListener::Port>("port"),
    });
  }

  explicit JsListener(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsListener>(info), env_data_(&per(info.Env())) {}
  ~JsListener() override { Stop(); }

  void Stop() {
    if (listener_) listener_->cancel();
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(env_data_->live.mu);
    env_data_->live.listeners.erase(this);
  }

  PerEnv* env_data_;
  std::unique_ptr<t::Listener> listener_;

 private:
  Napi::Value Accept(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::array<uint8_t, 24> tok = token_of(env, info[0], "NativeListener.accept");
    if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "NativeListener.accept: callback must be a function");
    if (thread_.joinable() || !listener_) throw Napi::Error::New(env, "NativeListener.accept: accepting already, or closed");
    const int timeout = info[1].As<Napi::Number>().Int32Value();
    auto tsfn = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "psrpc-bulk-accept", 0, 1);
    {
      std::lock_guard<std::mutex> lock(env_data_->live.mu);
      env_data_->live.listeners.insert(this);
    }
    t::Listener* l = listener_.get();
    thread_ = std::thread([l, tok, timeout, tsfn]() mutable {
      auto* o = new Outcome{-1, ""};
      o->fd = l->accept_one(tok.data(), timeout, &o->error);
      if (tsfn.BlockingCall(o, settle) != napi_ok) {
        if (o->fd >= 0) ::close(o->fd);
        delete o;
      }
      tsfn.Release();
    });
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop();
    listener_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), listener_ ? listener_->port() : 0); }

  std::thread thread_;
};

struct ConnectTask {
  PerEnv* env_data = nullptr;
  std::thread thread;
  int cancel = -1;
  bool done = false;
};

Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "listen: host must be a string");
  std::string error;
  auto l = t::listen_on(info[0].As<Napi::String>().Utf8Value(), &error);
  if (!l) throw Napi::Error::New(env, error);
  Napi::Object o = per(env).listener_ctor.New({});
  JsListener::Unwrap(o)->listener_ = std::move(l);
  return o;
}

// A connect thread finished: join it on the JS thread, then report.
struct ConnectOutcome {
  ConnectTask* task;
  Outcome outcome;
};

void finish_connect(Napi::Env env, Napi::Function cb, ConnectOutcome* c) {
  std::unique_ptr<ConnectOutcome> done(c);
  bool mine;
  {
    std::lock_guard<std::mutex> lock(c->task->env_data->live.mu);
    mine = c->task->env_data->live.connects.erase(c->task) > 0;  // else the teardown hook took (and frees) it
  }
  if (mine) {
    if (c->task->thread.joinable()) c->task->thread.join();
    ::close(c->task->cancel);
    delete c->task;
  }
  settle(env, cb, new Outcome(std::move(c->outcome)));
}

Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsNumber() || !info[2].IsTypedArray() || !info[4].IsFunction()) {
    throw Napi::TypeError::New(env, "connect(host, port, token, timeoutMs, cb)");
  }
  const std::array<uint8_t, 24> tok = token_of(env, info[2], "connect");
  const std::string host = info[0].As<Napi::String>().Utf8Value();
  const int port = info[1].As<Napi::Number>().Int32Value();
  const int timeout = info[3].As<Napi::Number>().Int32Value();
  auto* task = new ConnectTask();
  task->env_data = &per(env);
  task->cancel = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  auto tsfn = Napi::ThreadSafeFunction::New(env, info[4].As<Napi::Function>(), "psrpc-bulk-connect", 0, 1);
  {
    std::lock_guard<std::mutex> lock(task->env_data->live.mu);
    task->env_data->live.connects.insert(task);
  }
  task->thread = std::thread([task, host, port, tok, timeout, tsfn]() mutable {
    auto* c = new ConnectOutcome{task, {-1, ""}};
    c->outcome.fd = t::connect_to(host, port, tok.data(), timeout, task->cancel, &c->outcome.error);
    if (tsfn.BlockingCall(c, finish_connect) != napi_ok) {
      if (c->outcome.fd >= 0) ::close(c->outcome.fd);
      delete c;  // the task is joined and freed by the teardown hook
    }
    tsfn.Release();
  });
  return env.Undefined();
}

// release(arrayBuffer): gives a received payload's memory back now (to the pool or the arena)
// instead of when the ArrayBuffer is collected. The ArrayBuffer is detached first, so every view of
// it becomes empty: a later read finds nothing rather than another message's bytes. False (and
// nothing done) for any other ArrayBuffer.
Napi::Value Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) return Napi::Boolean::New(env, false);
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  void* data = ab.Data();
  auto& held = per(env).held;
  auto it = held.find(data);
  if (!data || it == held.end() || ab.ByteLength() == 0) return Napi::Boolean::New(env, false);
  Payload* p = it->second;
  ab.Detach();
  // the finalizer may have run inside Detach; if it did, the payload is released and gone
  auto again = held.find(data);
  if (again != held.end() && again->second == p) {
    held.erase(again);
    p->released = true;
    p->release();
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value PooledBytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(t::pooled_bytes())); }

Napi::Value TrimPool(const Napi::CallbackInfo& info) {
  t::trim_pool();
  return info.Env().Undefined();
}

// Environment teardown: cancel and join every thread this addon started in that environment.
void teardown(void* arg) {
  Live& live = static_cast<PerEnv*>(arg)->live;
  std::set<JsLink*> links;
  std::set<JsListener*> listeners;
  std::set<ConnectTask*> connects;
  {
    std::lock_guard<std::mutex> lock(live.mu);
    links = live.links;
    listeners = live.listeners;
    connects.swap(live.connects);
  }
  for (JsLink* l : links) l->Stop();
  for (JsListener* l : listeners) l->Stop();
  for (ConnectTask* c : connects) {
    const uint64_t one = 1;
    ssize_t ignored = write(c->cancel, &one, sizeof one);
    (void)ignored;
    if (c->thread.joinable()) c->thread.join();
    ::close(c->cancel);
    delete c;
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* d = new PerEnv();
  d->link_ctor = Napi::Persistent(JsLink::Define(env));
  d->listener_ctor = Napi::Persistent(JsListener::Define(env));
  env.SetInstanceData<PerEnv, keep>(d);
  exports.Set("listen", Napi::Function::New<Listen>(env, "listen"));
  exports.Set("connect", Napi::Function::New<Connect>(env, "connect"));
  exports.Set("release", Napi::Function::New<Release>(env, "release"));
  exports.Set("pooledBytes", Napi::Function::New<PooledBytes>(env, "pooledBytes"));
  exports.Set("trimPool", Napi::Function::New<TrimPool>(env, "trimPool"));
  napi_add_env_cleanup_hook(env, teardown, d);
  return exports;
}

}  // namespace

NODE_API_MODULE(psrpc_transport, Init)
