// The native half of @ibq/mpi: a thin N-API binding to the system's MPI (compiled against its
// mpi.h, so any MPI implementation and its network stack work). Every MPI call runs on ONE
// dedicated thread that also called MPI_Init_thread (MPI_THREAD_FUNNELED is all we ask for):
// JS enqueues a job and gets a Promise, the MPI thread runs the jobs in order and resolves
// them through a thread-safe function, so the event loop never blocks (Ctrl-C still works)
// and the calls are serialized by construction.

#include <mpi.h>
#include <napi.h>

#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

enum class DType { F32, BF16, F16 };
enum class Op { Sum, Avg };

struct Job {
  // Runs on the MPI thread; returns "" on success or an error message.
  std::function<std::string()> work;
  // Settles the promise on the JS thread.
  Napi::Promise::Deferred deferred;
  Napi::ObjectReference keepAlive;  // the buffer being reduced, held until the job settles
  std::string error;
  std::function<Napi::Value(Napi::Env)> result;
  bool last = false;  // MPI_Finalize: the thread ends after it
};

std::mutex mu;
std::condition_variable cv;
std::deque<Job*> queue;
bool threadStarted = false;
bool finalized = false;
int pending = 0;
Napi::ThreadSafeFunction tsfn;

int worldRank = 0, worldSize = 1, localRank = 0, localSize = 1, threadLevel = 0;
MPI_Op bf16SumOp = MPI_OP_NULL, f16SumOp = MPI_OP_NULL;

std::string mpiError(const char* what, int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(what) + " failed: " + std::string(text, len);
}

// bfloat16 <-> float: the upper half of a float32, rounded to nearest even (NaN kept quiet).
inline float bf16ToFloat(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float f16ToFloat(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}
inline uint16_t floatToF16(float f) {
  _Float16 v = static_cast<_Float16>(f);
  uint16_t h;
  std::memcpy(&h, &v, 2);
  return h;
}

// User reduction ops: sum in float32, store rounded to the 16-bit format.
void bf16Sum(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; i++) b[i] = floatToBf16(bf16ToFloat(a[i]) + bf16ToFloat(b[i]));
}
void f16Sum(void* in, void* inout, int* len, MPI_Datatype*) {
  auto* a = static_cast<uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; i++) b[i] = floatToF16(f16ToFloat(a[i]) + f16ToFloat(b[i]));
}

// Settles finished jobs on the JS thread.
void settle(Napi::Env env, Napi::Function, Job* job) {
  if (env != nullptr) {
    if (job->error.empty()) job->deferred.Resolve(job->result ? job->result(env) : env.Undefined());
    else job->deferred.Reject(Napi::Error::New(env, job->error).Value());
    // Nothing pending: let the process exit even though the MPI thread lives on.
    if (--pending == 0 && !finalized) tsfn.Unref(env);
  }
  delete job;
}

void mpiThread() {
  for (;;) {
    Job* job;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [] { return !queue.empty(); });
      job = queue.front();
      queue.pop_front();
    }
    job->error = job->work();
    bool last = job->last;
    tsfn.BlockingCall(job, settle);
    if (last) {
      tsfn.Release();
      return;
    }
  }
}

Napi::Promise enqueue(Napi::Env env, std::function<std::string()> work, std::function<Napi::Value(Napi::Env)> result = nullptr,
                      Napi::Object keep = Napi::Object(), bool last = false) {
  auto* job = new Job{std::move(work), Napi::Promise::Deferred::New(env), Napi::ObjectReference(), "", std::move(result), last};
  if (!keep.IsEmpty()) job->keepAlive = Napi::Persistent(keep);
  Napi::Promise p = job->deferred.Promise();
  if (pending++ == 0) tsfn.Ref(env);
  {
    std::lock_guard<std::mutex> lock(mu);
    queue.push_back(job);
  }
  cv.notify_one();
  return p;
}

void requireStarted(Napi::Env env) {
  if (!threadStarted) throw Napi::Error::New(env, "MPI: init() has not been called");
  if (finalized) throw Napi::Error::New(env, "MPI: already finalized");
}

// init(): starts the MPI thread, which calls MPI_Init_thread. Resolves to the world.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (threadStarted) throw Napi::Error::New(env, "MPI: init() called twice");
  threadStarted = true;
  tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "ibq-mpi", 0, 1);
  tsfn.Unref(env);
  Napi::Promise p = enqueue(
      env,
      []() -> std::string {
        int provided = 0;
        int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return "MPI_Init_thread failed (code " + std::to_string(rc) + ")";
        threadLevel = provided;
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &worldRank);
        MPI_Comm_size(MPI_COMM_WORLD, &worldSize);
        MPI_Comm node;
        rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, worldRank, MPI_INFO_NULL, &node);
        if (rc != MPI_SUCCESS) return mpiError("MPI_Comm_split_type", rc);
        MPI_Comm_rank(node, &localRank);
        MPI_Comm_size(node, &localSize);
        MPI_Comm_free(&node);
        MPI_Op_create(bf16Sum, 1, &bf16SumOp);
        MPI_Op_create(f16Sum, 1, &f16SumOp);
        return "";
      },
      [](Napi::Env env) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("rank", worldRank);
        o.Set("size", worldSize);
        o.Set("localRank", localRank);
        o.Set("localSize", localSize);
        o.Set("threadLevel", threadLevel);
        char version[MPI_MAX_LIBRARY_VERSION_STRING];
        int len = 0;
        MPI_Get_library_version(version, &len);
        o.Set("library", std::string(version, len));
        return o;
      });
  std::thread(mpiThread).detach();
  return p;
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireStarted(env);
  return enqueue(env, []() -> std::string {
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? "" : mpiError("MPI_Barrier", rc);
  });
}

// Bytes per MPI call. Counts are C ints, and MPICH allocates a temporary buffer the size of
// each all-reduce: pieces of a few MiB stay in cache and avoid page-faulting a fresh buffer of
// the whole payload on every call (IBQ_MPI_CHUNK_MB overrides, for measuring).
size_t chunkBytes() {
  static size_t bytes = [] {
    const char* env = std::getenv("IBQ_MPI_CHUNK_MB");
    double mb = env ? std::atof(env) : 8.0;
    return static_cast<size_t>(std::max(mb, 0.001) * 1024 * 1024);
  }();
  return bytes;
}

// broadcast(typedArray, root): in place, as bytes.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireStarted(env);
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "broadcast(typedArray, root)");
  auto arr = info[0].As<Napi::TypedArray>();
  int root = info[1].As<Napi::Number>().Int32Value();
  auto* data = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  size_t bytes = arr.ByteLength();
  return enqueue(
      env,
      [data, bytes, root]() -> std::string {
        const size_t chunk = std::min(chunkBytes(), size_t(INT_MAX));
        for (size_t at = 0; at < bytes; at += chunk) {
          size_t n = std::min(chunk, bytes - at);
          int rc = MPI_Bcast(data + at, static_cast<int>(n), MPI_BYTE, root, MPI_COMM_WORLD);
          if (rc != MPI_SUCCESS) return mpiError("MPI_Bcast", rc);
        }
        return "";
      },
      nullptr, arr);
}

// allReduce(typedArray, dtype: 'f32'|'bf16'|'f16'|'f64'|'i32', op: 'sum'|'avg', wire?: 'bf16'): in place.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireStarted(env);
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsString() || !info[2].IsString()) {
    throw Napi::TypeError::New(env, "allReduce(typedArray, dtype, op)");
  }
  auto arr = info[0].As<Napi::TypedArray>();
  std::string dtype = info[1].As<Napi::String>();
  std::string opName = info[2].As<Napi::String>();
  if (opName != "sum" && opName != "avg") throw Napi::TypeError::New(env, "allReduce: op must be 'sum' or 'avg', got '" + opName + "'");
  bool avg = opName == "avg";
  auto type = arr.TypedArrayType();
  MPI_Datatype mtype;
  MPI_Op mop = MPI_SUM;
  size_t width;
  int kind;  // 0 f32, 1 f64, 2 i32, 3 bf16, 4 f16
  if (dtype == "f32" && type == napi_float32_array) mtype = MPI_FLOAT, width = 4, kind = 0;
  else if (dtype == "f64" && type == napi_float64_array) mtype = MPI_DOUBLE, width = 8, kind = 1;
  else if (dtype == "i32" && type == napi_int32_array && !avg) mtype = MPI_INT, width = 4, kind = 2;
  else if ((dtype == "bf16" || dtype == "f16") && type == napi_uint16_array) {
    mtype = MPI_UINT16_T, width = 2, kind = dtype == "bf16" ? 3 : 4;
    mop = kind == 3 ? bf16SumOp : f16SumOp;
  } else {
    throw Napi::TypeError::New(env, "allReduce: dtype '" + dtype + "' with op '" + opName +
                                        "' does not match the array (f32: Float32Array, f64: Float64Array, i32: Int32Array (sum), bf16/f16: Uint16Array)");
  }
  auto* data = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
  size_t count = arr.ElementLength();
  // A Float32Array sent as bf16: converted piece by piece on the MPI thread, summed in float32.
  bool bf16Wire = info.Length() > 3 && info[3].IsString() && info[3].As<Napi::String>().Utf8Value() == "bf16";
  if (bf16Wire && kind != 0) throw Napi::TypeError::New(env, "allReduce: the bf16 wire is for Float32Array data (dtype f32)");
  if (bf16Wire) {
    return enqueue(
        env,
        [data, count, avg]() -> std::string {
          auto* f = reinterpret_cast<float*>(data);
          const float scale = avg ? 1.0f / static_cast<float>(worldSize) : 1.0f;
          const size_t chunk = std::max<size_t>(1, chunkBytes() / 2);
          std::vector<uint16_t> wire(std::min(chunk, count));
          for (size_t at = 0; at < count; at += chunk) {
            size_t n = std::min(chunk, count - at);
            for (size_t i = 0; i < n; i++) wire[i] = floatToBf16(f[at + i] * scale);
            int rc = MPI_Allreduce(MPI_IN_PLACE, wire.data(), static_cast<int>(n), MPI_UINT16_T, bf16SumOp, MPI_COMM_WORLD);
            if (rc != MPI_SUCCESS) return mpiError("MPI_Allreduce", rc);
            for (size_t i = 0; i < n; i++) f[at + i] = bf16ToFloat(wire[i]);
          }
          return "";
        },
        nullptr, arr);
  }
  return enqueue(
      env,
      [data, count, mtype, mop, width, kind, avg]() -> std::string {
        float inv = 1.0f / static_cast<float>(worldSize);
        // 16-bit formats are divided before the sum (f16 would overflow after it).
        if (avg && kind == 3) for (size_t i = 0; i < count; i++) { auto* p = reinterpret_cast<uint16_t*>(data) + i; *p = floatToBf16(bf16ToFloat(*p) * inv); }
        if (avg && kind == 4) for (size_t i = 0; i < count; i++) { auto* p = reinterpret_cast<uint16_t*>(data) + i; *p = floatToF16(f16ToFloat(*p) * inv); }
        const size_t chunk = std::max<size_t>(1, chunkBytes() / width);
        for (size_t at = 0; at < count; at += chunk) {
          size_t n = std::min(chunk, count - at);
          int rc = MPI_Allreduce(MPI_IN_PLACE, data + at * width, static_cast<int>(n), mtype, mop, MPI_COMM_WORLD);
          if (rc != MPI_SUCCESS) return mpiError("MPI_Allreduce", rc);
        }
        if (avg && kind == 0) for (size_t i = 0; i < count; i++) reinterpret_cast<float*>(data)[i] /= static_cast<float>(worldSize);
        if (avg && kind == 1) for (size_t i = 0; i < count; i++) reinterpret_cast<double*>(data)[i] /= static_cast<double>(worldSize);
        return "";
      },
      nullptr, arr);
}

// finalize(): MPI_Finalize on the MPI thread, which then ends.
Napi::Value Finalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  requireStarted(env);
  Napi::Promise p = enqueue(env, []() -> std::string {
    if (bf16SumOp != MPI_OP_NULL) MPI_Op_free(&bf16SumOp);
    if (f16SumOp != MPI_OP_NULL) MPI_Op_free(&f16SumOp);
    int rc = MPI_Finalize();
    return rc == MPI_SUCCESS ? "" : mpiError("MPI_Finalize", rc);
  }, nullptr, Napi::Object(), true);
  finalized = true;  // later calls are refused; the thread leaves after this job
  return p;
}

// abort(code): MPI_Abort from the JS thread, at once (the MPI thread may be blocked in a
// collective whose peer died); ends every rank of the job.
Napi::Value Abort(const Napi::CallbackInfo& info) {
  int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
  MPI_Abort(MPI_COMM_WORLD, code);
  return info.Env().Undefined();
}

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("barrier", Napi::Function::New(env, Barrier));
  exports.Set("broadcast", Napi::Function::New(env, Broadcast));
  exports.Set("allReduce", Napi::Function::New(env, AllReduce));
  exports.Set("finalize", Napi::Function::New(env, Finalize));
  exports.Set("abort", Napi::Function::New(env, Abort));
  return exports;
}

}  // namespace

NODE_API_MODULE(ibq_mpi, Module)
