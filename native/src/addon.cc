// The addon's entry: registers every function of functions.h and every constant of constants.h on the
// exports, and owns the per-env lifecycle (docs/internals.md, "The native addon"). addon.h describes
// the contract and the layout of the sources.

#include "addon.h"

#include <vector>

#include "constants.h"

namespace virtiofsd {

namespace {

Napi::Object makeConstants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
#define NATIVE_CONSTANT(name) c.Set(#name, Napi::Number::New(env, static_cast<double>(name)));
  NATIVE_CONSTANTS(NATIVE_CONSTANT)
#undef NATIVE_CONSTANT
  Napi::Object e = Napi::Object::New(env);
#define NATIVE_ERRNO(name) e.Set(#name, Napi::Number::New(env, name));
  NATIVE_ERRNOS(NATIVE_ERRNO)
#undef NATIVE_ERRNO
  c.Set("errno", e);
  return c;
}

}  // namespace

NativeAddon::NativeAddon(Napi::Env env, Napi::Object exports) {
#define NATIVE_REGISTER(method, jsName) InstanceMethod(#jsName, &NativeAddon::method, napi_enumerable),
  DefineAddon(exports, {NATIVE_FUNCTIONS(NATIVE_REGISTER)});
#undef NATIVE_REGISTER
  exports.Set("constants", makeConstants(env));
  rawEnv = env;
  if (napi_add_env_cleanup_hook(env, EnvCleanup, this) == napi_ok) cleanupRegistered = true;
}

// Env teardown (worker exit): close every active handle, or the worker's loop could not be closed.
void NativeAddon::EnvCleanup(void* arg) {
  NativeAddon* a = static_cast<NativeAddon*>(arg);
  a->cleanupRegistered = false;
  std::vector<uint32_t> ids;
  for (auto& kv : a->watchers) ids.push_back(kv.first);
  for (uint32_t id : ids) a->StopWatcher(id, true);
  a->winRef.Reset();
  a->winBase = nullptr;
  a->winLen = 0;
  a->table = GuestTable{};
}

NativeAddon::~NativeAddon() {
  // Instance data is finalized at env teardown; the cleanup hook normally ran already. The JS side is
  // gone by now, so the watchers' JS references are not released, only their handles closed.
  if (cleanupRegistered) napi_remove_env_cleanup_hook(rawEnv, EnvCleanup, this);
  std::vector<uint32_t> ids;
  for (auto& kv : watchers) ids.push_back(kv.first);
  for (uint32_t id : ids) StopWatcher(id, false);
}

}  // namespace virtiofsd

using virtiofsd::NativeAddon;
NODE_API_ADDON(NativeAddon)
