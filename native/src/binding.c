/*
 * Node-API binding of klc_native. Only node_api.h is used, so one binary loads in Node and in
 * the editor's Electron. Device pointers cross into JS as BigInt; failures throw an Error whose
 * message is klc_last_error() and whose `code` names the KLC_E_* class.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "klc_native.h"

#define CHECK_NAPI(env, call)                                   \
  do {                                                          \
    if ((call) != napi_ok) {                                    \
      napi_throw_error((env), "KLC_E_BINDING", "klc binding: " #call " failed"); \
      return NULL;                                              \
    }                                                           \
  } while (0)

static const char *code_name(int rc) {
  switch (rc) {
    case KLC_E_NO_DRIVER: return "NO_DRIVER";
    case KLC_E_NO_DEVICE: return "NO_DEVICE";
    case KLC_E_ARCH: return "ARCH";
    case KLC_E_OOM: return "OOM";
    case KLC_E_ARG: return "ARG";
    default: return "CUDA";
  }
}

static napi_value throw_rc(napi_env env, int rc) {
  napi_throw_error(env, code_name(rc), klc_last_error());
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, "ARG", "klc binding: too few arguments");
    return 0;
  }
  return 1;
}

static int get_ctx(napi_env env, napi_value v, klc_ctx **ctx) {
  void *p = NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || !p) {
    napi_throw_type_error(env, "ARG", "klc binding: expected a context from create()");
    return 0;
  }
  *ctx = *(klc_ctx **)p;
  if (!*ctx) {
    napi_throw_error(env, "ARG", "klc binding: the context was destroyed");
    return 0;
  }
  return 1;
}

static int get_ptr(napi_env env, napi_value v, void **out) {
  uint64_t u = 0;
  bool lossless = false;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined || t == napi_null) {
    *out = NULL;
    return 1;
  }
  if (napi_get_value_bigint_uint64(env, v, &u, &lossless) != napi_ok || !lossless) {
    napi_throw_type_error(env, "ARG", "klc binding: device pointers are BigInt values from alloc()");
    return 0;
  }
  *out = (void *)(uintptr_t)u;
  return 1;
}

static napi_value make_ptr(napi_env env, void *p) {
  napi_value r;
  napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)p, &r);
  return r;
}

static int get_i32(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "ARG", "klc binding: expected an integer");
    return 0;
  }
  return 1;
}

static int get_f32(napi_env env, napi_value v, float *out) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    napi_throw_type_error(env, "ARG", "klc binding: expected a number");
    return 0;
  }
  *out = (float)d;
  return 1;
}

static int get_size(napi_env env, napi_value v, size_t *out) {
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok || d < 0 || d > 9007199254740991.0 || d != (double)(uint64_t)d) {
    napi_throw_type_error(env, "ARG", "klc binding: expected a byte count");
    return 0;
  }
  *out = (size_t)d;
  return 1;
}

/* Bytes of a TypedArray, DataView or Buffer argument. */
static int get_bytes(napi_env env, napi_value v, void **data, size_t *len) {
  bool is_ta = false, is_dv = false;
  napi_is_typedarray(env, v, &is_ta);
  if (is_ta) {
    napi_typedarray_type type;
    size_t n, off;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &type, &n, data, &ab, &off) != napi_ok) return 0;
    size_t el = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: el = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: el = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: el = 8; break;
      default: el = 1;
    }
    *len = n * el;
    return 1;
  }
  napi_is_dataview(env, v, &is_dv);
  if (is_dv) {
    napi_value ab;
    size_t off;
    return napi_get_dataview_info(env, v, len, data, &ab, &off) == napi_ok;
  }
  napi_throw_type_error(env, "ARG", "klc binding: expected a TypedArray or DataView");
  return 0;
}

static int get_u32(napi_env env, napi_value v, uint32_t *out) {
  if (napi_get_value_uint32(env, v, out) != napi_ok) {
    napi_throw_type_error(env, "ARG", "klc binding: expected an unsigned 32-bit integer");
    return 0;
  }
  return 1;
}

static napi_value js_fill_normal_bf16(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  klc_ctx *ctx;
  void *p;
  size_t n;
  uint32_t key, key2;
  double scale;
  if (!get_args(env, info, 6, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &p) || !get_size(env, argv[2], &n) ||
      !get_u32(env, argv[3], &key) || !get_u32(env, argv[4], &key2))
    return NULL;
  if (napi_get_value_double(env, argv[5], &scale) != napi_ok) {
    napi_throw_type_error(env, "ARG", "klc binding: expected a number for the scale");
    return NULL;
  }
  int rc = klc_fill_normal_bf16(ctx, p, n, key, key2, scale);
  return rc ? throw_rc(env, rc) : NULL;
}

/* MLA cache buffers cross into JS as BigInt host addresses of their klc_vbuf. */
static napi_value js_vbuf_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  klc_ctx *ctx;
  if (!get_args(env, info, 1, argv) || !get_ctx(env, argv[0], &ctx)) return NULL;
  klc_vbuf *b = NULL;
  int rc = klc_vbuf_create(ctx, &b);
  return rc ? throw_rc(env, rc) : make_ptr(env, b);
}

static napi_value js_vbuf_reserve(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  klc_ctx *ctx;
  void *b;
  size_t bytes, used;
  if (!get_args(env, info, 4, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &b) || !get_size(env, argv[2], &bytes) ||
      !get_size(env, argv[3], &used))
    return NULL;
  void *base = NULL;
  int rc = klc_vbuf_reserve(ctx, (klc_vbuf *)b, bytes, used, &base);
  return rc ? throw_rc(env, rc) : make_ptr(env, base);
}

static napi_value js_vbuf_fork(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  klc_ctx *ctx;
  void *src;
  size_t used;
  if (!get_args(env, info, 3, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &src) || !get_size(env, argv[2], &used))
    return NULL;
  klc_vbuf *b = NULL;
  void *base = NULL;
  int rc = klc_vbuf_fork(ctx, (klc_vbuf *)src, used, &b, &base);
  if (rc) return throw_rc(env, rc);
  napi_value r;
  napi_create_object(env, &r);
  napi_set_named_property(env, r, "buf", make_ptr(env, b));
  napi_set_named_property(env, r, "base", make_ptr(env, base));
  return r;
}

static napi_value js_vbuf_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *b;
  if (!get_args(env, info, 1, argv) || !get_ptr(env, argv[0], &b)) return NULL;
  napi_value r;
  napi_create_double(env, (double)klc_vbuf_bytes((const klc_vbuf *)b), &r);
  return r;
}

static napi_value js_vbuf_free(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  klc_ctx *ctx;
  void *b;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &b)) return NULL;
  int rc = klc_vbuf_free(ctx, (klc_vbuf *)b);
  return rc ? throw_rc(env, rc) : NULL;
}

static napi_value js_abi_version(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_int32(env, klc_abi_version(), &r);
  return r;
}

static napi_value js_build_archs(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_string_utf8(env, klc_build_archs(), NAPI_AUTO_LENGTH, &r);
  return r;
}

/* Never throws for a missing driver or device: returns { count, code, error } so that callers
 * can report why the CUDA backend is unavailable. */
static napi_value js_device_count(napi_env env, napi_callback_info info) {
  (void)info;
  int n = 0;
  int rc = klc_device_count(&n);
  napi_value r, count, code, err;
  napi_create_object(env, &r);
  napi_create_int32(env, n, &count);
  napi_set_named_property(env, r, "count", count);
  if (rc) {
    napi_create_string_utf8(env, code_name(rc), NAPI_AUTO_LENGTH, &code);
    napi_create_string_utf8(env, klc_last_error(), NAPI_AUTO_LENGTH, &err);
    napi_set_named_property(env, r, "code", code);
    napi_set_named_property(env, r, "error", err);
  }
  return r;
}

static void set_num(napi_env env, napi_value obj, const char *name, double v) {
  napi_value x;
  napi_create_double(env, v, &x);
  napi_set_named_property(env, obj, name, x);
}

static napi_value js_device_info(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t dev;
  if (!get_args(env, info, 1, argv) || !get_i32(env, argv[0], &dev)) return NULL;
  klc_device_info di;
  int rc = klc_device_query(dev, &di);
  if (rc) return throw_rc(env, rc);
  napi_value r, name;
  napi_create_object(env, &r);
  napi_create_string_utf8(env, di.name, NAPI_AUTO_LENGTH, &name);
  napi_set_named_property(env, r, "name", name);
  set_num(env, r, "major", di.major);
  set_num(env, r, "minor", di.minor);
  set_num(env, r, "multiprocessors", di.multiprocessors);
  set_num(env, r, "totalBytes", (double)di.total_bytes);
  set_num(env, r, "freeBytes", (double)di.free_bytes);
  set_num(env, r, "driverVersion", di.driver_version);
  set_num(env, r, "runtimeVersion", di.runtime_version);
  return r;
}

static void finalize_ctx(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  klc_ctx **slot = (klc_ctx **)data;
  if (*slot) klc_destroy(*slot);
  free(slot);
}

static napi_value js_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t dev;
  if (!get_args(env, info, 1, argv) || !get_i32(env, argv[0], &dev)) return NULL;
  klc_ctx *ctx = NULL;
  int rc = klc_create(dev, &ctx);
  if (rc) return throw_rc(env, rc);
  klc_ctx **slot = (klc_ctx **)malloc(sizeof *slot);
  if (!slot) {
    klc_destroy(ctx);
    napi_throw_error(env, "OOM", "klc binding: out of host memory");
    return NULL;
  }
  *slot = ctx;
  napi_value ext;
  if (napi_create_external(env, slot, finalize_ctx, NULL, &ext) != napi_ok) {
    klc_destroy(ctx);
    free(slot);
    napi_throw_error(env, "KLC_E_BINDING", "klc binding: napi_create_external failed");
    return NULL;
  }
  return ext;
}

static napi_value js_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  void *p = NULL;
  if (napi_get_value_external(env, argv[0], &p) != napi_ok || !p) {
    napi_throw_type_error(env, "ARG", "klc binding: expected a context from create()");
    return NULL;
  }
  klc_ctx **slot = (klc_ctx **)p;
  if (*slot) klc_destroy(*slot);
  *slot = NULL;
  return NULL;
}

static napi_value js_synchronize(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  klc_ctx *ctx;
  if (!get_args(env, info, 1, argv) || !get_ctx(env, argv[0], &ctx)) return NULL;
  int rc = klc_synchronize(ctx);
  return rc ? throw_rc(env, rc) : NULL;
}

static napi_value js_alloc(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  klc_ctx *ctx;
  size_t bytes;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx) || !get_size(env, argv[1], &bytes)) return NULL;
  void *p = NULL;
  int rc = klc_alloc(ctx, bytes, &p);
  return rc ? throw_rc(env, rc) : make_ptr(env, p);
}

static napi_value js_free(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  klc_ctx *ctx;
  void *p;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &p)) return NULL;
  int rc = klc_free(ctx, p);
  return rc ? throw_rc(env, rc) : NULL;
}

static napi_value js_zero(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  klc_ctx *ctx;
  void *p;
  size_t bytes;
  if (!get_args(env, info, 3, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &p) ||
      !get_size(env, argv[2], &bytes))
    return NULL;
  int rc = klc_memset(ctx, p, 0, bytes);
  return rc ? throw_rc(env, rc) : NULL;
}

static napi_value js_copy(napi_env env, napi_callback_info info, int upload) {
  napi_value argv[3];
  klc_ctx *ctx;
  void *p, *host;
  size_t len;
  if (!get_args(env, info, 3, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &p) ||
      !get_bytes(env, argv[2], &host, &len))
    return NULL;
  int rc = upload ? klc_upload(ctx, p, host, len) : klc_download(ctx, host, p, len);
  return rc ? throw_rc(env, rc) : NULL;
}

static napi_value js_upload(napi_env env, napi_callback_info info) { return js_copy(env, info, 1); }
static napi_value js_download(napi_env env, napi_callback_info info) { return js_copy(env, info, 0); }

static int prop_i32(napi_env env, napi_value obj, const char *name, int32_t *out, int32_t dflt) {
  bool has = false;
  napi_has_named_property(env, obj, name, &has);
  if (!has) {
    *out = dflt;
    return 1;
  }
  napi_value v;
  napi_get_named_property(env, obj, name, &v);
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_boolean) {
    bool b;
    napi_get_value_bool(env, v, &b);
    *out = b;
    return 1;
  }
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "klc binding: KDA argument '%s' must be an integer", name);
    napi_throw_type_error(env, "ARG", msg);
    return 0;
  }
  return 1;
}

static int prop_ptr(napi_env env, napi_value obj, const char *name, void **out) {
  bool has = false;
  napi_has_named_property(env, obj, name, &has);
  if (!has) {
    *out = NULL;
    return 1;
  }
  napi_value v;
  napi_get_named_property(env, obj, name, &v);
  return get_ptr(env, v, out);
}

static int read_kda_args(napi_env env, napi_value obj, klc_kda_args *a) {
  int32_t l2 = 1, raw = 0;
  void *p[11];
  if (!prop_i32(env, obj, "B", &a->B, 0) || !prop_i32(env, obj, "T", &a->T, 0) || !prop_i32(env, obj, "H", &a->H, 0) ||
      !prop_i32(env, obj, "K", &a->K, 128) || !prop_i32(env, obj, "V", &a->V, 128) ||
      !prop_i32(env, obj, "l2normQk", &l2, 1) || !prop_i32(env, obj, "rawGates", &raw, 0))
    return 0;
  a->l2norm_qk = l2;
  a->raw_gates = raw;
  double scale = 0;
  bool has = false;
  napi_has_named_property(env, obj, "scale", &has);
  if (has) {
    napi_value v;
    napi_get_named_property(env, obj, "scale", &v);
    if (napi_get_value_double(env, v, &scale) != napi_ok) {
      napi_throw_type_error(env, "ARG", "klc binding: KDA argument 'scale' must be a number");
      return 0;
    }
  } else {
    scale = a->K > 0 ? 1.0 / __builtin_sqrt((double)a->K) : 0;
  }
  a->scale = (float)scale;
  const char *names[11] = {"q", "k", "v", "g", "beta", "aLog", "dtBias", "state", "o", NULL, NULL};
  for (int i = 0; i < 9; ++i)
    if (!prop_ptr(env, obj, names[i], &p[i])) return 0;
  a->q = p[0];
  a->k = p[1];
  a->v = p[2];
  a->g = (const float *)p[3];
  a->beta = (const float *)p[4];
  a->A_log = (const float *)p[5];
  a->dt_bias = (const float *)p[6];
  a->state = (float *)p[7];
  a->o = p[8];
  return 1;
}

static napi_value js_kda(napi_env env, napi_callback_info info, int decode) {
  napi_value argv[2];
  klc_ctx *ctx;
  klc_kda_args a;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx) || !read_kda_args(env, argv[1], &a)) return NULL;
  int rc = decode ? klc_kda_decode(ctx, &a) : klc_kda_prefill(ctx, &a);
  return rc ? throw_rc(env, rc) : NULL;
}

static napi_value js_kda_prefill(napi_env env, napi_callback_info info) { return js_kda(env, info, 0); }
static napi_value js_kda_decode(napi_env env, napi_callback_info info) { return js_kda(env, info, 1); }

static napi_value js_kda_time(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  klc_ctx *ctx;
  klc_kda_args a;
  bool decode = false;
  int32_t iters;
  if (!get_args(env, info, 4, argv) || !get_ctx(env, argv[0], &ctx) || !read_kda_args(env, argv[1], &a) ||
      napi_get_value_bool(env, argv[2], &decode) != napi_ok || !get_i32(env, argv[3], &iters))
    return NULL;
  float ms = 0;
  int rc = klc_kda_time(ctx, &a, decode, iters, &ms);
  if (rc) return throw_rc(env, rc);
  napi_value r;
  napi_create_double(env, ms, &r);
  return r;
}


/* Layer operations: each JS function takes (ctx, ...args) in the order of its C function; the
 * signature string names each argument's kind: p device pointer (BigInt, or null), i int32,
 * z byte count, l 64-bit integer (a safe JS integer), f float. */
typedef union {
  void *p;
  int32_t i;
  size_t z;
  long long l;
  float f;
} arg_t;

#define MAX_OP_ARGS 16

static int read_sig(napi_env env, napi_callback_info info, const char *sig, klc_ctx **ctx, arg_t *v) {
  napi_value argv[MAX_OP_ARGS + 1];
  size_t n = 0;
  while (sig[n]) ++n;
  if (!get_args(env, info, n + 1, argv) || !get_ctx(env, argv[0], ctx)) return 0;
  for (size_t k = 0; k < n; ++k) {
    napi_value a = argv[k + 1];
    double d = 0;
    switch (sig[k]) {
      case 'p':
        if (!get_ptr(env, a, &v[k].p)) return 0;
        break;
      case 'i':
        if (!get_i32(env, a, &v[k].i)) return 0;
        break;
      case 'z':
        if (!get_size(env, a, &v[k].z)) return 0;
        break;
      case 'l':
        if (napi_get_value_double(env, a, &d) != napi_ok || d != (double)(long long)d) {
          napi_throw_type_error(env, "ARG", "klc binding: expected an integer stride");
          return 0;
        }
        v[k].l = (long long)d;
        break;
      default:
        if (napi_get_value_double(env, a, &d) != napi_ok) {
          napi_throw_type_error(env, "ARG", "klc binding: expected a number");
          return 0;
        }
        v[k].f = (float)d;
    }
  }
  return 1;
}

static napi_value done(napi_env env, int rc) { return rc ? throw_rc(env, rc) : NULL; }

static napi_value js_embed(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "pppiii", &c, v)) return NULL;
  return done(env, klc_embed(c, v[0].p, v[1].p, v[2].p, v[3].i, v[4].i, v[5].i));
}

static napi_value js_rmsnorm(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "pippiiif", &c, v)) return NULL;
  return done(env, klc_rmsnorm(c, v[0].p, v[1].i, v[2].p, v[3].p, v[4].i, v[5].i, v[6].i, v[7].f));
}

static napi_value js_add(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ppz", &c, v)) return NULL;
  return done(env, klc_add(c, v[0].p, v[1].p, v[2].z));
}

static napi_value js_add_rmsnorm(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ppppiif", &c, v)) return NULL;
  return done(env, klc_add_rmsnorm(c, v[0].p, v[1].p, v[2].p, v[3].p, v[4].i, v[5].i, v[6].f));
}

static napi_value js_copy2d(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "pipiii", &c, v)) return NULL;
  return done(env, klc_copy2d(c, v[0].p, v[1].i, v[2].p, v[3].i, v[4].i, v[5].i));
}

static napi_value js_copy_device(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ppz", &c, v)) return NULL;
  return done(env, klc_copy(c, v[0].p, v[1].p, v[2].z));
}

static napi_value js_silu_mul(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ppii", &c, v)) return NULL;
  return done(env, klc_silu_mul(c, v[0].p, v[1].p, v[2].i, v[3].i));
}

static napi_value js_linear(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "pippiiiiilllii", &c, v)) return NULL;
  return done(env, klc_linear(c, v[0].p, v[1].i, v[2].p, v[3].p, v[4].i, v[5].i, v[6].i, v[7].i, v[8].i, v[9].l, v[10].l,
                              v[11].l, v[12].i, v[13].i));
}

static napi_value js_short_conv(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "pppppiiii", &c, v)) return NULL;
  return done(env, klc_short_conv(c, v[0].p, v[1].p, v[2].p, v[3].p, v[4].p, v[5].i, v[6].i, v[7].i, v[8].i));
}

static napi_value js_kda_recurrent(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  klc_ctx *ctx;
  klc_kda_args a;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx) || !read_kda_args(env, argv[1], &a)) return NULL;
  return done(env, klc_kda_recurrent_f32(ctx, &a));
}

static napi_value js_gated_rmsnorm(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "pipppiif", &c, v)) return NULL;
  return done(env, klc_gated_rmsnorm(c, v[0].p, v[1].i, v[2].p, v[3].p, v[4].p, v[5].i, v[6].i, v[7].f));
}

static napi_value js_mla_workspace_bytes(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "iii", &c, v)) return NULL;
  napi_value r;
  napi_create_double(env, (double)klc_mla_workspace_bytes(v[0].i, v[1].i, v[2].i), &r);
  return r;
}

static napi_value js_mla_splits(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ii", &c, v)) return NULL;
  napi_value r;
  napi_create_int32(env, klc_mla_splits(c, v[0].i, v[1].i), &r);
  return r;
}

static napi_value js_mla_append_latents(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "pppiiiif", &c, v)) return NULL;
  return done(env, klc_mla_append_latents(c, v[0].p, v[1].p, v[2].p, v[3].i, v[4].i, v[5].i, v[6].i, v[7].f));
}

static napi_value js_mla_attention(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ppippziiiiifi", &c, v)) return NULL;
  return done(env, klc_mla_attention(c, v[0].p, v[1].p, v[2].i, v[3].p, v[4].p, v[5].z, v[6].i, v[7].i, v[8].i, v[9].i, v[10].i,
                                     v[11].f, v[12].i));
}

static napi_value js_mla_heads_wanted(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "iiiiii", &c, v)) return NULL;
  napi_value r;
  napi_get_boolean(env, klc_mla_heads_wanted(c, v[0].i, v[1].i, v[2].i, v[3].i, v[4].i, v[5].i) != 0, &r);
  return r;
}

static napi_value js_mla_prefill_heads(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ppipppiiiiiiif", &c, v)) return NULL;
  return done(env, klc_mla_prefill_heads(c, v[0].p, v[1].p, v[2].i, v[3].p, v[4].p, v[5].p, v[6].i, v[7].i, v[8].i, v[9].i,
                                         v[10].i, v[11].i, v[12].i, v[13].f));
}

static napi_value js_moe_route(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ppppiiiif", &c, v)) return NULL;
  return done(env, klc_moe_route(c, v[0].p, v[1].p, v[2].p, v[3].p, v[4].i, v[5].i, v[6].i, v[7].i, v[8].f));
}

static napi_value js_moe_workspace_bytes(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "iiiii", &c, v)) return NULL;
  napi_value r;
  napi_create_double(env, (double)klc_moe_workspace_bytes(v[0].i, v[1].i, v[2].i, v[3].i, v[4].i), &r);
  return r;
}

static napi_value js_moe_experts(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "pppppppziiiiii", &c, v)) return NULL;
  return done(env, klc_moe_experts(c, v[0].p, v[1].p, v[2].p, v[3].p, v[4].p, v[5].p, v[6].p, v[7].z, v[8].i, v[9].i,
                                   v[10].i, v[11].i, v[12].i, v[13].i));
}

/* ---- Weight-only quantized matrices ---- */

/* A klc_wq from { packed, scales, zeros, bits, N, K, group, scalesF32, fp8 } (fp8: E4M3 codes). */
static int read_wq(napi_env env, napi_value obj, klc_wq *w) {
  void *packed = NULL, *scales = NULL, *zeros = NULL;
  int32_t f32 = 0, fp8 = 0;
  if (!prop_ptr(env, obj, "packed", &packed) || !prop_ptr(env, obj, "scales", &scales) || !prop_ptr(env, obj, "zeros", &zeros) ||
      !prop_i32(env, obj, "bits", &w->bits, 0) || !prop_i32(env, obj, "N", &w->N, 0) || !prop_i32(env, obj, "K", &w->K, 0) ||
      !prop_i32(env, obj, "group", &w->group, 0) || !prop_i32(env, obj, "scalesF32", &f32, 0) || !prop_i32(env, obj, "fp8", &fp8, 0))
    return 0;
  w->w_packed = (const int32_t *)packed;
  w->scales = scales;
  w->zero_points = (const int32_t *)zeros;
  w->scales_f32 = f32;
  w->codes = fp8 ? KLC_WQ_E4M3 : KLC_WQ_INT;
  return 1;
}

/* (ctx, x, ldx, w, y, ldy, M, accumulate) */
static napi_value js_wq_gemv(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  klc_ctx *ctx;
  klc_wq w;
  void *x, *y;
  int32_t ldx, ldy, M, acc;
  if (!get_args(env, info, 8, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &x) || !get_i32(env, argv[2], &ldx) ||
      !read_wq(env, argv[3], &w) || !get_ptr(env, argv[4], &y) || !get_i32(env, argv[5], &ldy) || !get_i32(env, argv[6], &M) ||
      !get_i32(env, argv[7], &acc))
    return NULL;
  return done(env, klc_wq_gemv(ctx, (const float *)x, ldx, &w, (float *)y, ldy, M, acc));
}

/* The length of a JS array of 1..max items (what: the argument's name, items: what it holds, for the message). */
static int get_array_length(napi_env env, napi_value v, uint32_t max, const char *what, const char *items, uint32_t *n) {
  bool is_array = false;
  napi_is_array(env, v, &is_array);
  if (!is_array || napi_get_array_length(env, v, n) != napi_ok || *n < 1 || *n > max) {
    char msg[160];
    snprintf(msg, sizeof msg, "klc binding: '%s' must be an array of 1 to %u %s", what, max, items);
    napi_throw_type_error(env, "ARG", msg);
    return 0;
  }
  return 1;
}

/* (ctx, jobs, M): jobs an array of 1..KLC_WQ_JOBS_MAX { x, ldx, w, y, ldy, accumulate } */
static napi_value js_wq_gemv_many(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  klc_ctx *ctx;
  int32_t M;
  uint32_t n = 0;
  if (!get_args(env, info, 3, argv) || !get_ctx(env, argv[0], &ctx) || !get_i32(env, argv[2], &M) ||
      !get_array_length(env, argv[1], KLC_WQ_JOBS_MAX, "jobs", "quantized matrix products", &n))
    return NULL;
  klc_wq_job jobs[KLC_WQ_JOBS_MAX];
  for (uint32_t j = 0; j < n; ++j) {
    napi_value o, w;
    void *x = NULL, *y = NULL;
    napi_get_element(env, argv[1], j, &o);
    if (napi_get_named_property(env, o, "w", &w) != napi_ok || !prop_ptr(env, o, "x", &x) || !prop_ptr(env, o, "y", &y) ||
        !prop_i32(env, o, "ldx", &jobs[j].ldx, 0) || !prop_i32(env, o, "ldy", &jobs[j].ldy, 0) ||
        !prop_i32(env, o, "accumulate", &jobs[j].accumulate, 0) || !read_wq(env, w, &jobs[j].w))
      return NULL;
    jobs[j].x = (const float *)x;
    jobs[j].y = (float *)y;
  }
  return done(env, klc_wq_gemv_many(ctx, jobs, (int)n, M));
}

/* (ctx, w, row0, rows, out, outF32) */
static napi_value js_wq_dequant(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  klc_ctx *ctx;
  klc_wq w;
  void *out;
  int32_t row0, rows, f32;
  if (!get_args(env, info, 6, argv) || !get_ctx(env, argv[0], &ctx) || !read_wq(env, argv[1], &w) || !get_i32(env, argv[2], &row0) ||
      !get_i32(env, argv[3], &rows) || !get_ptr(env, argv[4], &out) || !get_i32(env, argv[5], &f32))
    return NULL;
  return done(env, klc_wq_dequant(ctx, &w, row0, rows, out, f32));
}

/* (ctx, w, N, K, bits, group, fp8, packed, scales, scalesF32); fp8: E4M3 codes */
static napi_value js_wq_quantize_bf16(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  klc_ctx *ctx;
  void *w, *packed, *scales;
  int32_t N, K, bits, group, fp8, f32;
  if (!get_args(env, info, 10, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &w) || !get_i32(env, argv[2], &N) ||
      !get_i32(env, argv[3], &K) || !get_i32(env, argv[4], &bits) || !get_i32(env, argv[5], &group) || !get_i32(env, argv[6], &fp8) ||
      !get_ptr(env, argv[7], &packed) || !get_ptr(env, argv[8], &scales) || !get_i32(env, argv[9], &f32))
    return NULL;
  return done(env, klc_wq_quantize_bf16(ctx, w, N, K, bits, group, fp8 ? KLC_WQ_E4M3 : KLC_WQ_INT, (int32_t *)packed, scales, f32));
}

static napi_value js_moe_dense_bytes(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "iiii", &c, v)) return NULL;
  napi_value r;
  napi_create_double(env, (double)klc_moe_dense_bytes(v[0].i, v[1].i, v[2].i, v[3].i), &r);
  return r;
}

/* (ctx, x, idx, w, w13, w2, out, ws, wsBytes, dense, denseF32, T, d, I, E, k) */
static napi_value js_moe_experts_wq(napi_env env, napi_callback_info info) {
  napi_value argv[16];
  klc_ctx *ctx;
  klc_wq w13, w2;
  void *x, *idx, *wt, *out, *ws, *dense;
  size_t ws_bytes;
  int32_t dense_f32, T, d, I, E, k;
  if (!get_args(env, info, 16, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &x) || !get_ptr(env, argv[2], &idx) ||
      !get_ptr(env, argv[3], &wt) || !read_wq(env, argv[4], &w13) || !read_wq(env, argv[5], &w2) || !get_ptr(env, argv[6], &out) ||
      !get_ptr(env, argv[7], &ws) || !get_size(env, argv[8], &ws_bytes) || !get_ptr(env, argv[9], &dense) ||
      !get_i32(env, argv[10], &dense_f32) || !get_i32(env, argv[11], &T) || !get_i32(env, argv[12], &d) ||
      !get_i32(env, argv[13], &I) || !get_i32(env, argv[14], &E) || !get_i32(env, argv[15], &k))
    return NULL;
  return done(env, klc_moe_experts_wq(ctx, (const float *)x, (const int32_t *)idx, (const float *)wt, &w13, &w2, (float *)out, ws,
                                      ws_bytes, dense, dense_f32, T, d, I, E, k));
}

/* The router's arguments from argv[first]: wRouter, wF32, bias, logits, idx, w, T, d, E, k, renorm, scaling. */
typedef struct {
  void *wr, *bias, *logits, *idx, *wt;
  int32_t w_f32, T, d, E, k, renorm;
  float scaling;
} router_args;

static int get_router_args(napi_env env, napi_value *argv, router_args *r) {
  return get_ptr(env, argv[0], &r->wr) && get_i32(env, argv[1], &r->w_f32) && get_ptr(env, argv[2], &r->bias) && get_ptr(env, argv[3], &r->logits) &&
         get_ptr(env, argv[4], &r->idx) && get_ptr(env, argv[5], &r->wt) && get_i32(env, argv[6], &r->T) && get_i32(env, argv[7], &r->d) &&
         get_i32(env, argv[8], &r->E) && get_i32(env, argv[9], &r->k) && get_i32(env, argv[10], &r->renorm) && get_f32(env, argv[11], &r->scaling);
}

/* (ctx, x, wRouter, wF32, bias, logits, idx, w, T, d, E, k, renorm, scaling) */
static napi_value js_moe_router(napi_env env, napi_callback_info info) {
  napi_value argv[14];
  klc_ctx *ctx;
  void *x;
  router_args r;
  if (!get_args(env, info, 14, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &x) || !get_router_args(env, argv + 2, &r))
    return NULL;
  return done(env, klc_moe_router(ctx, (const float *)x, r.wr, r.w_f32, (const float *)r.bias, (float *)r.logits, (int32_t *)r.idx, (float *)r.wt,
                                  r.T, r.d, r.E, r.k, r.renorm, r.scaling));
}

/* (ctx, h, a, normW, eps, y, wRouter, wF32, bias, logits, idx, w, T, d, E, k, renorm, scaling) */
static napi_value js_moe_router_norm(napi_env env, napi_callback_info info) {
  napi_value argv[18];
  klc_ctx *ctx;
  void *h, *a, *nw, *y;
  float eps;
  router_args r;
  if (!get_args(env, info, 18, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &h) || !get_ptr(env, argv[2], &a) ||
      !get_ptr(env, argv[3], &nw) || !get_f32(env, argv[4], &eps) || !get_ptr(env, argv[5], &y) || !get_router_args(env, argv + 6, &r))
    return NULL;
  return done(env, klc_moe_router_norm(ctx, (float *)h, (const float *)a, (const float *)nw, eps, (float *)y, r.wr, r.w_f32, (const float *)r.bias,
                                       (float *)r.logits, (int32_t *)r.idx, (float *)r.wt, r.T, r.d, r.E, r.k, r.renorm, r.scaling));
}

/* (ctx, x, idx, w, w13, w2, sharedW13, sharedW2, out, ws, wsBytes, T, d, I, E, k): bf16 experts */
static napi_value js_moe_block(napi_env env, napi_callback_info info) {
  napi_value argv[16];
  klc_ctx *ctx;
  void *x, *idx, *wt, *w13, *w2, *s13, *s2, *out, *ws;
  size_t ws_bytes;
  int32_t T, d, I, E, k;
  if (!get_args(env, info, 16, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &x) || !get_ptr(env, argv[2], &idx) ||
      !get_ptr(env, argv[3], &wt) || !get_ptr(env, argv[4], &w13) || !get_ptr(env, argv[5], &w2) || !get_ptr(env, argv[6], &s13) ||
      !get_ptr(env, argv[7], &s2) || !get_ptr(env, argv[8], &out) || !get_ptr(env, argv[9], &ws) || !get_size(env, argv[10], &ws_bytes) ||
      !get_i32(env, argv[11], &T) || !get_i32(env, argv[12], &d) || !get_i32(env, argv[13], &I) || !get_i32(env, argv[14], &E) ||
      !get_i32(env, argv[15], &k))
    return NULL;
  return done(env, klc_moe_block(ctx, (const float *)x, (const int32_t *)idx, (const float *)wt, w13, w2, s13, s2, (float *)out, ws, ws_bytes,
                                 T, d, I, E, k));
}

/* (ctx, x, idx, w, w13, w2, sharedW13, sharedW2, out, ws, wsBytes, dense, denseF32, T, d, I, E, k) */
static napi_value js_moe_block_wq(napi_env env, napi_callback_info info) {
  napi_value argv[18];
  klc_ctx *ctx;
  klc_wq w13, w2, s13, s2;
  void *x, *idx, *wt, *out, *ws, *dense;
  size_t ws_bytes;
  int32_t dense_f32, T, d, I, E, k;
  if (!get_args(env, info, 18, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &x) || !get_ptr(env, argv[2], &idx) ||
      !get_ptr(env, argv[3], &wt) || !read_wq(env, argv[4], &w13) || !read_wq(env, argv[5], &w2) || !read_wq(env, argv[6], &s13) ||
      !read_wq(env, argv[7], &s2) || !get_ptr(env, argv[8], &out) || !get_ptr(env, argv[9], &ws) || !get_size(env, argv[10], &ws_bytes) ||
      !get_ptr(env, argv[11], &dense) || !get_i32(env, argv[12], &dense_f32) || !get_i32(env, argv[13], &T) || !get_i32(env, argv[14], &d) ||
      !get_i32(env, argv[15], &I) || !get_i32(env, argv[16], &E) || !get_i32(env, argv[17], &k))
    return NULL;
  return done(env, klc_moe_block_wq(ctx, (const float *)x, (const int32_t *)idx, (const float *)wt, &w13, &w2, &s13, &s2, (float *)out, ws,
                                    ws_bytes, dense, dense_f32, T, d, I, E, k));
}

/* ---- Expert offload: pinned host memory and the CPU experts ---- */

static napi_value js_host_alloc(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  klc_ctx *ctx;
  size_t bytes;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx) || !get_size(env, argv[1], &bytes)) return NULL;
  void *p = NULL;
  int rc = klc_host_alloc(ctx, bytes, &p);
  return rc ? throw_rc(env, rc) : make_ptr(env, p);
}

static napi_value js_host_free(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  klc_ctx *ctx;
  void *p;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &p)) return NULL;
  return done(env, klc_host_free(ctx, p));
}

/* (dst host pointer, TypedArray) */
static napi_value js_host_write(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *dst, *src;
  size_t len;
  if (!get_args(env, info, 2, argv) || !get_ptr(env, argv[0], &dst) || !get_bytes(env, argv[1], &src, &len)) return NULL;
  return done(env, klc_host_write(dst, src, len));
}

/* (ctx, dst device pointer, src pinned host pointer, bytes) */
static napi_value js_copy_to_device_async(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  klc_ctx *ctx;
  void *dst, *src;
  size_t bytes;
  if (!get_args(env, info, 4, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &dst) || !get_ptr(env, argv[2], &src) ||
      !get_size(env, argv[3], &bytes))
    return NULL;
  return done(env, klc_copy_to_device_async(ctx, dst, src, bytes));
}

/* (ctx, threads, maxTokens, d, k) -> the job's host address */
static napi_value js_host_moe_create(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "iiii", &c, v)) return NULL;
  klc_host_moe *m = NULL;
  int rc = klc_host_moe_create(c, v[0].i, v[1].i, v[2].i, v[3].i, &m);
  return rc ? throw_rc(env, rc) : make_ptr(env, m);
}

static napi_value js_host_moe_free(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *m;
  if (!get_args(env, info, 1, argv) || !get_ptr(env, argv[0], &m)) return NULL;
  klc_host_moe_free((klc_host_moe *)m);
  return NULL;
}

static napi_value js_host_moe_threads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *m;
  if (!get_args(env, info, 1, argv) || !get_ptr(env, argv[0], &m)) return NULL;
  napi_value r;
  napi_create_int32(env, klc_host_moe_threads((const klc_host_moe *)m), &r);
  return r;
}

/* (ctx, job, x, idx, w, T) */
static napi_value js_host_moe_begin(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  klc_ctx *ctx;
  void *m, *x, *idx, *w;
  int32_t T;
  if (!get_args(env, info, 6, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &m) || !get_ptr(env, argv[2], &x) ||
      !get_ptr(env, argv[3], &idx) || !get_ptr(env, argv[4], &w) || !get_i32(env, argv[5], &T))
    return NULL;
  return done(env, klc_host_moe_begin(ctx, (klc_host_moe *)m, (const float *)x, (const int32_t *)idx, (const float *)w, T));
}

/* (ctx, job, w13, w2, out, yDev, T, d, I, E, k) */
static napi_value js_host_moe_finish(napi_env env, napi_callback_info info) {
  napi_value argv[11];
  klc_ctx *ctx;
  klc_wq w13, w2;
  void *m, *out, *y;
  int32_t T, d, I, E, k;
  if (!get_args(env, info, 11, argv) || !get_ctx(env, argv[0], &ctx) || !get_ptr(env, argv[1], &m) || !read_wq(env, argv[2], &w13) ||
      !read_wq(env, argv[3], &w2) || !get_ptr(env, argv[4], &out) || !get_ptr(env, argv[5], &y) || !get_i32(env, argv[6], &T) ||
      !get_i32(env, argv[7], &d) || !get_i32(env, argv[8], &I) || !get_i32(env, argv[9], &E) || !get_i32(env, argv[10], &k))
    return NULL;
  return done(env, klc_host_moe_finish(ctx, (klc_host_moe *)m, &w13, &w2, (float *)out, (float *)y, T, d, I, E, k));
}

/* Returns the engine in words; throws with the reason when tensor cores were asked for and cuBLAS failed. */
static napi_value js_set_tensor_cores(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "i", &c, v)) return NULL;
  int rc = klc_set_tensor_cores(c, v[0].i);
  if (rc) return throw_rc(env, rc);
  napi_value r;
  napi_create_string_utf8(env, klc_gemm_engine(c), NAPI_AUTO_LENGTH, &r);
  return r;
}

/* ---- Batched decode and sampling ---- */

/* A BigUint64Array of device pointers (one per sequence). */
static int get_ptr_array(napi_env env, napi_value v, const char *what, float **out, size_t *count) {
  bool is_ta = false;
  napi_is_typedarray(env, v, &is_ta);
  napi_typedarray_type type;
  size_t n = 0, off;
  void *data = NULL;
  napi_value ab;
  if (!is_ta || napi_get_typedarray_info(env, v, &type, &n, &data, &ab, &off) != napi_ok || type != napi_biguint64_array ||
      n < 1 || n > KLC_MAX_DECODE_BATCH) {
    char msg[160];
    snprintf(msg, sizeof msg, "klc binding: '%s' must be a BigUint64Array of 1 to %d device pointers", what, KLC_MAX_DECODE_BATCH);
    napi_throw_type_error(env, "ARG", msg);
    return 0;
  }
  for (size_t i = 0; i < n; ++i) out[i] = (float *)(uintptr_t)((uint64_t *)data)[i];
  *count = n;
  return 1;
}

static int named(napi_env env, napi_value obj, const char *name, napi_value *out) {
  if (napi_get_named_property(env, obj, name, out) != napi_ok) {
    napi_throw_type_error(env, "ARG", "klc binding: expected an object");
    return 0;
  }
  return 1;
}

static int prop_f64(napi_env env, napi_value obj, const char *name, double *out) {
  napi_value v;
  if (!named(env, obj, name, &v)) return 0;
  if (napi_get_value_double(env, v, out) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "klc binding: '%s' must be a number", name);
    napi_throw_type_error(env, "ARG", msg);
    return 0;
  }
  return 1;
}

static napi_value js_kda_decode_batch(napi_env env, napi_callback_info info) {
  napi_value argv[2], v;
  klc_ctx *ctx;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx)) return NULL;
  napi_value obj = argv[1];
  klc_kda_decode_batch_args a;
  float *states[KLC_MAX_DECODE_BATCH], *tails[KLC_MAX_DECODE_BATCH];
  size_t ns = 0, nt = 0;
  double scale = 0;
  double eps = 0;
  void *p[11];
  const char *names[11] = {"proj", "convW", "g", "beta", "aLog", "dtBias", "o", "x", "bW", "oNormW", "gate"};
  if (!prop_i32(env, obj, "H", &a.H, 0) || !prop_i32(env, obj, "K", &a.K, 0) || !prop_i32(env, obj, "V", &a.V, 0) ||
      !prop_i32(env, obj, "W", &a.W, 0) || !prop_f64(env, obj, "scale", &scale) || !prop_i32(env, obj, "d", &a.d, 0) ||
      !prop_i32(env, obj, "bWF32", &a.b_w_f32, 0))
    return NULL;
  for (int i = 0; i < 11; ++i)
    if (!prop_ptr(env, obj, names[i], &p[i])) return NULL;
  if (p[9] && !prop_f64(env, obj, "eps", &eps)) return NULL;
  if (!named(env, obj, "states", &v) || !get_ptr_array(env, v, "states", states, &ns)) return NULL;
  if (!named(env, obj, "tails", &v) || !get_ptr_array(env, v, "tails", tails, &nt)) return NULL;
  if (ns != nt) {
    napi_throw_type_error(env, "ARG", "klc binding: 'states' and 'tails' must have one pointer per sequence each");
    return NULL;
  }
  a.B = (int)ns;
  a.scale = (float)scale;
  a.proj = (const float *)p[0];
  a.conv_w = (const float *)p[1];
  a.g = (const float *)p[2];
  a.beta = (const float *)p[3];
  a.A_log = (const float *)p[4];
  a.dt_bias = (const float *)p[5];
  a.o = (float *)p[6];
  a.x = (const float *)p[7];
  a.b_w = p[8];
  a.o_norm_w = (const float *)p[9];
  a.gate = (const float *)p[10];
  a.eps = (float)eps;
  a.states = states;
  a.tails = tails;
  return done(env, klc_kda_decode_batch(ctx, &a));
}

static napi_value js_mla_decode_workspace_bytes(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "iiiii", &c, v)) return NULL;
  napi_value r;
  napi_create_double(env, (double)klc_mla_decode_workspace_bytes(c, v[0].i, v[1].i, v[2].i, v[3].i, v[4].i), &r);
  return r;
}

/* (ctx, q, caches: BigUint64Array, cacheType, lengths: Int32Array, positions, capacity, out, ws, wsBytes, H, D, L, scale) */
static napi_value js_mla_decode(napi_env env, napi_callback_info info) {
  napi_value argv[14];
  klc_ctx *ctx;
  if (!get_args(env, info, 14, argv) || !get_ctx(env, argv[0], &ctx)) return NULL;
  float *caches[KLC_MAX_DECODE_BATCH];
  size_t n = 0, len_bytes = 0;
  void *q, *out, *ws, *lengths, *positions;
  size_t ws_bytes;
  int32_t cache_type, capacity, H, D, L;
  double scale;
  if (!get_ptr(env, argv[1], &q) || !get_ptr_array(env, argv[2], "caches", caches, &n) || !get_i32(env, argv[3], &cache_type) ||
      !get_bytes(env, argv[4], &lengths, &len_bytes) || !get_ptr(env, argv[5], &positions) || !get_i32(env, argv[6], &capacity) ||
      !get_ptr(env, argv[7], &out) || !get_ptr(env, argv[8], &ws) || !get_size(env, argv[9], &ws_bytes) ||
      !get_i32(env, argv[10], &H) || !get_i32(env, argv[11], &D) || !get_i32(env, argv[12], &L) ||
      napi_get_value_double(env, argv[13], &scale) != napi_ok)
    return NULL;
  if (len_bytes != n * sizeof(int32_t)) {
    napi_throw_type_error(env, "ARG", "klc binding: 'lengths' must be an Int32Array with one length per cache");
    return NULL;
  }
  return done(env, klc_mla_decode(ctx, q, (const void *const *)caches, cache_type, (const int32_t *)lengths,
                                   (const int32_t *)positions, capacity, out, ws, ws_bytes, (int)n, H, D, L, (float)scale));
}

/* (ctx, ckv, w, caches: BigUint64Array, cacheType, positions, D, L, eps) */
static napi_value js_mla_append_at(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  klc_ctx *ctx;
  if (!get_args(env, info, 9, argv) || !get_ctx(env, argv[0], &ctx)) return NULL;
  float *caches[KLC_MAX_DECODE_BATCH];
  size_t n = 0;
  void *ckv, *w, *positions;
  int32_t cache_type, D, L;
  double eps;
  if (!get_ptr(env, argv[1], &ckv) || !get_ptr(env, argv[2], &w) || !get_ptr_array(env, argv[3], "caches", caches, &n) ||
      !get_i32(env, argv[4], &cache_type) || !get_ptr(env, argv[5], &positions) || !get_i32(env, argv[6], &D) ||
      !get_i32(env, argv[7], &L) || napi_get_value_double(env, argv[8], &eps) != napi_ok)
    return NULL;
  return done(env, klc_mla_append_at(ctx, ckv, w, (const void *const *)caches, cache_type, (const int32_t *)positions, (int)n, D, L,
                                     (float)eps));
}

/* Graphs cross into JS as BigInt host addresses of their klc_graph, as MLA cache buffers do. */
static napi_value js_graph_begin(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  klc_ctx *ctx;
  if (!get_args(env, info, 1, argv) || !get_ctx(env, argv[0], &ctx)) return NULL;
  return done(env, klc_graph_begin(ctx));
}

/* (ctx, keep): the graph, or undefined when keep is false (the recording is discarded). */
static napi_value js_graph_end(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  klc_ctx *ctx;
  bool keep = false;
  if (!get_args(env, info, 2, argv) || !get_ctx(env, argv[0], &ctx)) return NULL;
  if (napi_get_value_bool(env, argv[1], &keep) != napi_ok) {
    napi_throw_type_error(env, "ARG", "klc binding: graphEnd's keep must be a boolean");
    return NULL;
  }
  klc_graph *g = NULL;
  int rc = klc_graph_end(ctx, keep ? &g : NULL);
  if (rc) return throw_rc(env, rc);
  return keep ? make_ptr(env, g) : NULL;
}

/* (ctx, graph): false when the graph is stale and was not queued (see klc_graph_launch). */
static napi_value js_graph_launch(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "p", &c, v)) return NULL;
  int launched = 0;
  int rc = klc_graph_launch(c, (klc_graph *)v[0].p, &launched);
  if (rc) return throw_rc(env, rc);
  napi_value r;
  napi_get_boolean(env, launched != 0, &r);
  return r;
}

static napi_value js_graph_free(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "p", &c, v)) return NULL;
  return done(env, klc_graph_free(c, (klc_graph *)v[0].p));
}

static napi_value js_sample_workspace_bytes(napi_env env, napi_callback_info info) {
  klc_ctx *c; arg_t v[MAX_OP_ARGS];
  if (!read_sig(env, info, "ii", &c, v)) return NULL;
  napi_value r;
  napi_create_double(env, (double)klc_sample_workspace_bytes(v[0].i, v[1].i), &r);
  return r;
}

/* (ctx, logits, ld, picks: {temperature, topP, topK, vocab, uniform}[], ids, ws, wsBytes) */
static napi_value js_sample(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  klc_ctx *ctx;
  if (!get_args(env, info, 7, argv) || !get_ctx(env, argv[0], &ctx)) return NULL;
  void *logits, *ids, *ws;
  int32_t ld;
  size_t ws_bytes;
  uint32_t rows = 0;
  if (!get_ptr(env, argv[1], &logits) || !get_i32(env, argv[2], &ld) || !get_ptr(env, argv[4], &ids) ||
      !get_ptr(env, argv[5], &ws) || !get_size(env, argv[6], &ws_bytes) ||
      !get_array_length(env, argv[3], KLC_MAX_DECODE_BATCH, "picks", "token picks", &rows))
    return NULL;
  klc_token_pick picks[KLC_MAX_DECODE_BATCH];
  for (uint32_t r = 0; r < rows; ++r) {
    napi_value o;
    napi_get_element(env, argv[3], r, &o);
    double top_k = 0, vocab = 0;
    if (!prop_f64(env, o, "temperature", &picks[r].temperature) || !prop_f64(env, o, "topP", &picks[r].top_p) ||
        !prop_f64(env, o, "uniform", &picks[r].uniform) || !prop_f64(env, o, "topK", &top_k) || !prop_f64(env, o, "vocab", &vocab))
      return NULL;
    picks[r].top_k = top_k > 2147483647.0 ? 2147483647 : (int)top_k;
    picks[r].vocab = vocab > 2147483647.0 ? 2147483647 : (int)vocab;
  }
  return done(env, klc_sample(ctx, logits, ld, (int)rows, picks, ids, ws, ws_bytes));
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"abiVersion", NULL, js_abi_version, NULL, NULL, NULL, napi_enumerable, NULL},
      {"buildArchs", NULL, js_build_archs, NULL, NULL, NULL, napi_enumerable, NULL},
      {"deviceCount", NULL, js_device_count, NULL, NULL, NULL, napi_enumerable, NULL},
      {"deviceInfo", NULL, js_device_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"create", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"destroy", NULL, js_destroy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"synchronize", NULL, js_synchronize, NULL, NULL, NULL, napi_enumerable, NULL},
      {"alloc", NULL, js_alloc, NULL, NULL, NULL, napi_enumerable, NULL},
      {"free", NULL, js_free, NULL, NULL, NULL, napi_enumerable, NULL},
      {"zero", NULL, js_zero, NULL, NULL, NULL, napi_enumerable, NULL},
      {"upload", NULL, js_upload, NULL, NULL, NULL, napi_enumerable, NULL},
      {"download", NULL, js_download, NULL, NULL, NULL, napi_enumerable, NULL},
      {"kdaPrefill", NULL, js_kda_prefill, NULL, NULL, NULL, napi_enumerable, NULL},
      {"kdaDecode", NULL, js_kda_decode, NULL, NULL, NULL, napi_enumerable, NULL},
      {"kdaTime", NULL, js_kda_time, NULL, NULL, NULL, napi_enumerable, NULL},
      {"embed", NULL, js_embed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rmsnorm", NULL, js_rmsnorm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"add", NULL, js_add, NULL, NULL, NULL, napi_enumerable, NULL},
      {"addRmsnorm", NULL, js_add_rmsnorm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copy2d", NULL, js_copy2d, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyDevice", NULL, js_copy_device, NULL, NULL, NULL, napi_enumerable, NULL},
      {"siluMul", NULL, js_silu_mul, NULL, NULL, NULL, napi_enumerable, NULL},
      {"linear", NULL, js_linear, NULL, NULL, NULL, napi_enumerable, NULL},
      {"shortConv", NULL, js_short_conv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"kdaRecurrent", NULL, js_kda_recurrent, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gatedRmsnorm", NULL, js_gated_rmsnorm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaWorkspaceBytes", NULL, js_mla_workspace_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaSplits", NULL, js_mla_splits, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaAppendLatents", NULL, js_mla_append_latents, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaAttention", NULL, js_mla_attention, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaHeadsWanted", NULL, js_mla_heads_wanted, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaPrefillHeads", NULL, js_mla_prefill_heads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeRoute", NULL, js_moe_route, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeWorkspaceBytes", NULL, js_moe_workspace_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeExperts", NULL, js_moe_experts, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wqGemv", NULL, js_wq_gemv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wqGemvMany", NULL, js_wq_gemv_many, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wqDequant", NULL, js_wq_dequant, NULL, NULL, NULL, napi_enumerable, NULL},
      {"wqQuantizeBf16", NULL, js_wq_quantize_bf16, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeDenseBytes", NULL, js_moe_dense_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeExpertsWq", NULL, js_moe_experts_wq, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeRouter", NULL, js_moe_router, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeRouterNorm", NULL, js_moe_router_norm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeBlock", NULL, js_moe_block, NULL, NULL, NULL, napi_enumerable, NULL},
      {"moeBlockWq", NULL, js_moe_block_wq, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hostAlloc", NULL, js_host_alloc, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hostFree", NULL, js_host_free, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hostWrite", NULL, js_host_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyToDeviceAsync", NULL, js_copy_to_device_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hostMoeCreate", NULL, js_host_moe_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hostMoeFree", NULL, js_host_moe_free, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hostMoeThreads", NULL, js_host_moe_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hostMoeBegin", NULL, js_host_moe_begin, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hostMoeFinish", NULL, js_host_moe_finish, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setTensorCores", NULL, js_set_tensor_cores, NULL, NULL, NULL, napi_enumerable, NULL},
      {"kdaDecodeBatch", NULL, js_kda_decode_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaDecodeWorkspaceBytes", NULL, js_mla_decode_workspace_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaDecode", NULL, js_mla_decode, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mlaAppendAt", NULL, js_mla_append_at, NULL, NULL, NULL, napi_enumerable, NULL},
      {"graphBegin", NULL, js_graph_begin, NULL, NULL, NULL, napi_enumerable, NULL},
      {"graphEnd", NULL, js_graph_end, NULL, NULL, NULL, napi_enumerable, NULL},
      {"graphLaunch", NULL, js_graph_launch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"graphFree", NULL, js_graph_free, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sampleWorkspaceBytes", NULL, js_sample_workspace_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sample", NULL, js_sample, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fillNormalBf16", NULL, js_fill_normal_bf16, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vbufCreate", NULL, js_vbuf_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vbufReserve", NULL, js_vbuf_reserve, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vbufFork", NULL, js_vbuf_fork, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vbufBytes", NULL, js_vbuf_bytes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vbufFree", NULL, js_vbuf_free, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK_NAPI(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
