// Growable, forkable device buffers for the MLA latent caches (klc_vbuf_*), on CUDA's virtual
// memory management: a buffer is a reserved address range backed by physical extents mapped one
// after another. Growing maps another extent (the rows already there never move or get copied);
// when the address range is full, the same extents are mapped into a larger range. A fork maps
// its source's extents, as far as they hold complete granules of used rows, into a range of its
// own and copies only the last partly used granule: a question forked from a 1M-token repository
// shares the repository's rows instead of copying gigabytes, in a few map calls per extent.
// Sources never write below their length, so the shared granules never change under a fork.
//
// Where the driver lacks virtual memory management, buffers fall back to cudaMalloc: growth then
// copies into a doubled allocation and a fork copies the used rows.
#include <cuda.h>

#include <algorithm>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "internal.h"

namespace {

// Extents double from one granule up to this, so growth needs few map calls and wastes at most this
// much per buffer beyond its rows.
constexpr size_t MAX_EXTENT = size_t(128) << 20;

struct Driver {
  bool ok = false;
  CUresult (*memCreate)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long) = nullptr;
  CUresult (*memRelease)(CUmemGenericAllocationHandle) = nullptr;
  CUresult (*addressReserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long) = nullptr;
  CUresult (*addressFree)(CUdeviceptr, size_t) = nullptr;
  CUresult (*memMap)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long) = nullptr;
  CUresult (*memUnmap)(CUdeviceptr, size_t) = nullptr;
  CUresult (*setAccess)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t) = nullptr;
  CUresult (*retain)(CUmemGenericAllocationHandle *, void *) = nullptr;
  CUresult (*granularity)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags) = nullptr;
  CUresult (*deviceGet)(CUdevice *, int) = nullptr;
  CUresult (*attribute)(int *, CUdevice_attribute, CUdevice) = nullptr;
};

template <typename F>
bool entry(const char *name, F &fn) {
  void *p = nullptr;
  cudaDriverEntryPointQueryResult status;
  if (cudaGetDriverEntryPointByVersion(name, &p, 12000, cudaEnableDefault, &status) != cudaSuccess ||
      status != cudaDriverEntryPointSuccess || !p) {
    cudaGetLastError();
    return false;
  }
  fn = reinterpret_cast<F>(p);
  return true;
}

const Driver &driver() {
  static Driver d = [] {
    Driver x;
    x.ok = entry("cuMemCreate", x.memCreate) && entry("cuMemRelease", x.memRelease) &&
           entry("cuMemAddressReserve", x.addressReserve) && entry("cuMemAddressFree", x.addressFree) &&
           entry("cuMemMap", x.memMap) && entry("cuMemUnmap", x.memUnmap) && entry("cuMemSetAccess", x.setAccess) &&
           entry("cuMemRetainAllocationHandle", x.retain) && entry("cuMemGetAllocationGranularity", x.granularity) &&
           entry("cuDeviceGet", x.deviceGet) && entry("cuDeviceGetAttribute", x.attribute);
    return x;
  }();
  return d;
}

int fail_cu(CUresult r, const std::string &what) {
  if (r == CUDA_ERROR_OUT_OF_MEMORY)
    return klc::fail(KLC_E_OOM, what + " failed: out of GPU memory. Lower the context (kimiLinear.maxContextTokens / --max-tokens), ask fewer questions at once, or use a GPU with more memory.");
  return klc::fail(KLC_E_CUDA, what + " failed: CUDA driver error " + std::to_string((int)r));
}

size_t round_up(size_t x, size_t to) { return (x + to - 1) / to * to; }

struct Extent {
  size_t offset, size;
};

}  // namespace

struct klc_vbuf {
  int device = 0;
  bool vmm = false;
  size_t granule = 0;
  CUdeviceptr base = 0;
  size_t reserved = 0;  // address range (vmm) or allocation (fallback) in bytes
  size_t mapped = 0;    // bytes usable from base
  size_t shared = 0;    // bytes at the start mapped from a fork's source; growth doubles only what follows
  std::vector<Extent> extents;
};

namespace {

CUmemAllocationProp prop_for(int device) {
  CUmemAllocationProp p = {};
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location.id = device;
  return p;
}

int access_at(CUdeviceptr at, size_t size, int device) {
  CUmemAccessDesc a = {};
  a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  a.location.id = device;
  a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  CUresult r = driver().setAccess(at, size, &a, 1);
  return r == CUDA_SUCCESS ? KLC_OK : fail_cu(r, "enabling access to an MLA cache");
}

int set_access(const klc_vbuf *b, size_t offset, size_t size) { return access_at(b->base + offset, size, b->device); }

// Maps the whole physical extent whose first byte is at `from` (the start of a mapped extent of
// another range) at `to`, `size` being that extent's size: the driver maps only whole allocations.
int map_whole(CUdeviceptr to, CUdeviceptr from, size_t size, int device) {
  const Driver &d = driver();
  CUmemGenericAllocationHandle h;
  CUresult r = d.retain(&h, reinterpret_cast<void *>(from));
  if (r != CUDA_SUCCESS) return fail_cu(r, "sharing an MLA cache extent");
  r = d.memMap(to, size, 0, h, 0);
  d.memRelease(h);
  if (r != CUDA_SUCCESS) return fail_cu(r, "mapping a shared MLA cache extent");
  return access_at(to, size, device);
}

int map_shared(const klc_vbuf *dst, size_t offset, CUdeviceptr from, size_t size) {
  return map_whole(dst->base + offset, from, size, dst->device);
}

// Gives `b` an address range of at least `bytes`, keeping its extents mapped in order.
int grow_range(klc_vbuf *b, size_t bytes) {
  if (bytes <= b->reserved) return KLC_OK;
  const Driver &d = driver();
  size_t want = round_up(std::max(bytes, 2 * b->reserved), b->granule);
  CUdeviceptr next = 0;
  CUresult r = d.addressReserve(&next, want, 0, 0, 0);
  if (r != CUDA_SUCCESS) return fail_cu(r, "reserving addresses for an MLA cache");
  klc_vbuf moved = *b;
  moved.base = next;
  moved.reserved = want;
  for (const Extent &e : b->extents) {
    int rc = map_shared(&moved, e.offset, b->base + e.offset, e.size);
    if (rc) {
      for (const Extent &m : b->extents) {
        if (m.offset >= e.offset) break;
        d.memUnmap(next + m.offset, m.size);
      }
      d.addressFree(next, want);
      return rc;
    }
  }
  for (const Extent &e : b->extents) d.memUnmap(b->base + e.offset, e.size);
  if (b->reserved) d.addressFree(b->base, b->reserved);
  b->base = next;
  b->reserved = want;
  return KLC_OK;
}

int add_extent(klc_vbuf *b, size_t size) {
  const Driver &d = driver();
  int rc = grow_range(b, b->mapped + size);
  if (rc) return rc;
  CUmemAllocationProp p = prop_for(b->device);
  CUmemGenericAllocationHandle h;
  CUresult r = d.memCreate(&h, size, &p, 0);
  if (r != CUDA_SUCCESS) return fail_cu(r, "allocating " + std::to_string(size >> 20) + " MiB for an MLA cache");
  r = d.memMap(b->base + b->mapped, size, 0, h, 0);
  d.memRelease(h);  // the mapping keeps the memory until it is unmapped
  if (r != CUDA_SUCCESS) return fail_cu(r, "mapping an MLA cache extent");
  if ((rc = set_access(b, b->mapped, size))) {
    d.memUnmap(b->base + b->mapped, size);
    return rc;
  }
  b->extents.push_back({b->mapped, size});
  b->mapped += size;
  return KLC_OK;
}

int reserve_vmm(klc_vbuf *b, size_t bytes) {
  while (b->mapped < bytes) {
    size_t step = std::max(bytes - b->mapped, std::min(std::max(b->mapped - b->shared, b->granule), MAX_EXTENT));
    int rc = add_extent(b, round_up(step, b->granule));
    if (rc) return rc;
  }
  return KLC_OK;
}

int reserve_plain(klc_ctx *ctx, klc_vbuf *b, size_t bytes, size_t keep) {
  if (bytes <= b->mapped) return KLC_OK;
  size_t want = std::max(bytes, 2 * b->mapped);
  void *next = nullptr;
  cudaError_t e = cudaMalloc(&next, want);
  if (e != cudaSuccess) return klc::fail_cuda(e, ("allocating " + std::to_string(want >> 20) + " MiB for an MLA cache").c_str());
  if (keep) e = cudaMemcpyAsync(next, reinterpret_cast<void *>(b->base), keep, cudaMemcpyDeviceToDevice, ctx->stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(ctx->stream);
  if (e != cudaSuccess) {
    cudaFree(next);
    return klc::fail_cuda(e, "copying an MLA cache");
  }
  if (b->base) cudaFree(reinterpret_cast<void *>(b->base));
  b->base = reinterpret_cast<CUdeviceptr>(next);
  b->mapped = b->reserved = want;
  return KLC_OK;
}

// Makes `at` an extent boundary of `b`: the extent that straddles it is replaced by two physical
// extents meeting there, its bytes copied once (at most MAX_EXTENT). A fork can map only whole
// extents, so without this it would copy the shared rows of the straddling extent instead, up to
// MAX_EXTENT per layer per fork. Nothing else maps that extent: forks map only extents that lie
// wholly below their own fork point, and a buffer's fork points only grow. The old extent is kept
// alive until the new ones are in its place, so a failure leaves `b` as it was.
int split_at(klc_ctx *ctx, klc_vbuf *b, size_t at) {
  auto it = std::find_if(b->extents.begin(), b->extents.end(), [&](const Extent &e) { return e.offset < at && at < e.offset + e.size; });
  if (it == b->extents.end()) return KLC_OK;
  const Extent old = *it;
  const size_t lo = at - old.offset, hi = old.size - lo;
  const Driver &d = driver();
  CUdeviceptr scratch = 0;
  CUresult r = d.addressReserve(&scratch, old.size, 0, 0, 0);
  if (r != CUDA_SUCCESS) return fail_cu(r, "reserving addresses to split an MLA cache extent");
  CUmemAllocationProp p = prop_for(b->device);
  const size_t part_at[2] = {0, lo}, part_size[2] = {lo, hi};
  int made = 0, rc = KLC_OK;
  for (; made < 2 && !rc; ++made) {
    CUmemGenericAllocationHandle h;
    r = d.memCreate(&h, part_size[made], &p, 0);
    if (r != CUDA_SUCCESS) {
      rc = fail_cu(r, "allocating " + std::to_string(part_size[made] >> 20) + " MiB to split an MLA cache extent");
      break;
    }
    r = d.memMap(scratch + part_at[made], part_size[made], 0, h, 0);
    d.memRelease(h);  // the mapping keeps the memory until it is unmapped
    if (r != CUDA_SUCCESS) {
      rc = fail_cu(r, "mapping a split MLA cache extent");
      break;
    }
  }
  if (!rc) rc = access_at(scratch, old.size, b->device);
  if (!rc) {
    // Work queued on the old extent must finish before it is unmapped.
    cudaError_t e = cudaMemcpyAsync(reinterpret_cast<void *>(scratch), reinterpret_cast<const void *>(b->base + old.offset), old.size,
                                    cudaMemcpyDeviceToDevice, ctx->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(ctx->stream);
    if (e != cudaSuccess) rc = klc::fail_cuda(e, "copying an MLA cache extent to split it");
  }
  CUmemGenericAllocationHandle keep = 0;
  bool unmapped = false;
  if (!rc) {
    r = d.retain(&keep, reinterpret_cast<void *>(b->base + old.offset));
    if (r != CUDA_SUCCESS) rc = fail_cu(r, "holding an MLA cache extent while it is split");
  }
  if (!rc) {
    d.memUnmap(b->base + old.offset, old.size);
    unmapped = true;
    rc = map_whole(b->base + old.offset, scratch, lo, b->device);
    if (!rc) {
      rc = map_whole(b->base + at, scratch + lo, hi, b->device);
      if (rc) d.memUnmap(b->base + old.offset, lo);
    }
  }
  if (rc && unmapped && d.memMap(b->base + old.offset, old.size, 0, keep, 0) == CUDA_SUCCESS) set_access(b, old.offset, old.size);
  if (keep) d.memRelease(keep);
  for (int i = 0; i < made; ++i) d.memUnmap(scratch + part_at[i], part_size[i]);
  d.addressFree(scratch, old.size);
  if (rc) return rc;
  *it = {old.offset, lo};
  b->extents.insert(it + 1, {at, hi});
  return KLC_OK;
}

void release(klc_vbuf *b) {
  if (b->vmm) {
    const Driver &d = driver();
    for (const Extent &e : b->extents) d.memUnmap(b->base + e.offset, e.size);
    if (b->reserved) d.addressFree(b->base, b->reserved);
  } else if (b->base) {
    cudaFree(reinterpret_cast<void *>(b->base));
  }
  delete b;
}

}  // namespace

using namespace klc;

extern "C" {

int klc_vbuf_create(klc_ctx *ctx, klc_vbuf **out) {
  if (!out) return fail(KLC_E_ARG, "klc_vbuf_create: out is null");
  *out = nullptr;
  int rc = use_device(ctx);
  if (rc) return rc;
  klc_vbuf *b = new (std::nothrow) klc_vbuf();
  if (!b) return fail(KLC_E_OOM, "klc_vbuf_create: out of host memory");
  b->device = ctx->device;
  // KLC_VMM=0 forces the copying fallback (for comparisons and for its tests).
  const Driver &d = driver();
  const char *off = getenv("KLC_VMM");
  int vmm = 0;
  CUdevice dev;
  if (d.ok && !(off && off[0] == '0') && d.deviceGet(&dev, ctx->device) == CUDA_SUCCESS &&
      d.attribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev) == CUDA_SUCCESS && vmm) {
    CUmemAllocationProp p = prop_for(ctx->device);
    b->vmm = d.granularity(&b->granule, &p, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) == CUDA_SUCCESS && b->granule > 0;
  }
  cudaGetLastError();
  *out = b;
  return KLC_OK;
}

int klc_vbuf_reserve(klc_ctx *ctx, klc_vbuf *b, size_t bytes, size_t used, void **base) {
  if (!b || !base) return fail(KLC_E_ARG, "klc_vbuf_reserve: null buffer or output");
  int rc = use_device(ctx);
  if (rc) return rc;
  // Work queued on the old addresses must finish before they are unmapped or freed.
  if (bytes > b->mapped) cudaStreamSynchronize(ctx->stream);
  rc = b->vmm ? reserve_vmm(b, bytes) : reserve_plain(ctx, b, bytes, used);
  *base = reinterpret_cast<void *>(b->base);
  return rc;
}

int klc_vbuf_fork(klc_ctx *ctx, klc_vbuf *src, size_t used, klc_vbuf **out, void **base) {
  if (!src || !out || !base || used > src->mapped) return fail(KLC_E_ARG, "klc_vbuf_fork: bad source, length or output");
  *out = nullptr;
  int rc = use_device(ctx);
  if (rc) return rc;
  klc_vbuf *b = nullptr;
  if ((rc = klc_vbuf_create(ctx, &b))) return rc;
  b->vmm = src->vmm;
  b->granule = src->granule;
  size_t shared = 0;
  if (b->vmm) {
    shared = used / b->granule * b->granule;
    rc = split_at(ctx, src, shared);
    if (!rc) rc = grow_range(b, std::max(src->reserved, shared + b->granule));
    for (size_t i = 0; !rc && i < src->extents.size() && src->extents[i].offset < shared; ++i) {
      const Extent &e = src->extents[i];
      rc = map_shared(b, e.offset, src->base + e.offset, e.size);
      if (!rc) {
        b->extents.push_back(e);
        b->mapped = e.offset + e.size;
      }
    }
    b->shared = b->mapped;
    if (!rc) rc = reserve_vmm(b, used + b->granule);
  } else {
    rc = reserve_plain(ctx, b, std::max(used, size_t(1)), 0);
  }
  cudaError_t e = cudaSuccess;
  if (!rc && used > shared) {
    e = cudaMemcpyAsync(reinterpret_cast<void *>(b->base + shared), reinterpret_cast<const void *>(src->base + shared), used - shared,
                        cudaMemcpyDeviceToDevice, ctx->stream);
    if (e != cudaSuccess) rc = fail_cuda(e, "copying the unshared rows of an MLA cache");
  }
  if (rc) {
    release(b);
    return rc;
  }
  *out = b;
  *base = reinterpret_cast<void *>(b->base);
  return KLC_OK;
}

size_t klc_vbuf_bytes(const klc_vbuf *b) { return b ? b->mapped : 0; }

int klc_vbuf_free(klc_ctx *ctx, klc_vbuf *b) {
  if (!b) return KLC_OK;
  int rc = use_device(ctx);
  if (rc) return rc;
  cudaStreamSynchronize(ctx->stream);
  release(b);
  return KLC_OK;
}

}  // extern "C"
