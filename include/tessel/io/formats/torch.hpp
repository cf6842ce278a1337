#pragma once
// PyTorch checkpoints written by torch.save (the zip format): <archive>/data.pkl is a pickle of
// the state dict, <archive>/data/<key> hold the storages' bytes (stored, little-endian).
//
// The pickle is read by a small interpreter that builds tensors and containers only. It
// executes nothing: the only globals it accepts are collections.OrderedDict, the torch._utils
// tensor and parameter rebuilders, and the torch.*Storage types; any other global (os.system,
// builtins.eval, ...) is refused with format_error before anything else happens.

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "byte_reader.hpp"
#include "mmap.hpp"
#include "tessel/core/error.hpp"
#include "tessel/core/numeric.hpp"
#include "tessel/core/tensor.hpp"
#include "zip.hpp"

namespace tessel::io {

enum class torch_dtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

struct torch_dtype_info {
  torch_dtype dtype;
  const char* storage;  // the storage class name in the pickle
  const char* name;
  std::size_t size;
};
inline constexpr std::array<torch_dtype_info, 10> torch_dtypes{{
    {torch_dtype::F64, "DoubleStorage", "float64", 8},
    {torch_dtype::F32, "FloatStorage", "float32", 4},
    {torch_dtype::F16, "HalfStorage", "float16", 2},
    {torch_dtype::BF16, "BFloat16Storage", "bfloat16", 2},
    {torch_dtype::I64, "LongStorage", "int64", 8},
    {torch_dtype::I32, "IntStorage", "int32", 4},
    {torch_dtype::I16, "ShortStorage", "int16", 2},
    {torch_dtype::I8, "CharStorage", "int8", 1},
    {torch_dtype::U8, "ByteStorage", "uint8", 1},
    {torch_dtype::BOOL, "BoolStorage", "bool", 1},
}};
inline const torch_dtype_info& info(torch_dtype d) {
  return torch_dtypes[std::size_t(d)];
}
inline const char* name(torch_dtype d) {
  return info(d).name;
}

template <class T>
constexpr torch_dtype torch_dtype_of() {
  using U = std::remove_const_t<T>;
  if constexpr (std::is_same_v<U, double>)
    return torch_dtype::F64;
  else if constexpr (std::is_same_v<U, float>)
    return torch_dtype::F32;
  else if constexpr (std::is_same_v<U, f16>)
    return torch_dtype::F16;
  else if constexpr (std::is_same_v<U, bf16>)
    return torch_dtype::BF16;
  else if constexpr (std::is_same_v<U, std::int64_t>)
    return torch_dtype::I64;
  else if constexpr (std::is_same_v<U, std::int32_t>)
    return torch_dtype::I32;
  else if constexpr (std::is_same_v<U, std::int16_t>)
    return torch_dtype::I16;
  else if constexpr (std::is_same_v<U, std::int8_t>)
    return torch_dtype::I8;
  else if constexpr (std::is_same_v<U, std::uint8_t>)
    return torch_dtype::U8;
  else if constexpr (std::is_same_v<U, bool>)
    return torch_dtype::BOOL;
  else
    static_assert(sizeof(T) == 0, "tessel: no torch dtype for this type");
}

struct TorchTensor {
  std::string name;  // nested dict keys joined with '.'
  torch_dtype dtype = torch_dtype::F32;
  std::vector<std::int64_t> shape, strides;  // strides in elements
  std::int64_t storage_offset = 0;           // in elements
  std::string storage_key;
  std::span<const std::byte> storage;  // the whole storage, in place
  std::string file;

  std::int64_t n_elements() const noexcept {
    std::int64_t n = 1;
    for (auto e : shape) n *= e;
    return n;
  }
  bool is_contiguous() const noexcept {
    std::int64_t s = 1;
    for (std::size_t k = shape.size(); k-- > 0;) {
      if (shape[k] != 1 && strides[k] != s) return false;
      s *= shape[k];
    }
    return true;
  }

  /// A strided view of rank R (the tensor's rank; 1 for a 0-d tensor) in place.
  template <class T, std::size_t R>
  TensorView<const T, DynShape<R>> view() const {
    check<T>(R);
    const bool scalar = shape.empty();
    std::array<index_t, R> e{}, st{};
    for (std::size_t k = 0; k < R; ++k) {
      e[k] = scalar ? 1 : shape[k];
      st[k] = scalar ? 1 : strides[k];
    }
    if (reinterpret_cast<std::uintptr_t>(storage.data()) % alignof(T) != 0)
      throw format_error(file, 0, "storage of '" + name + "' is not aligned; use to_tensor()");
    return {reinterpret_cast<const T*>(storage.data()) + storage_offset, DynShape<R>::from_array(e),
            st};
  }
  /// A contiguous copy (works for any alignment and strides).
  template <class T, std::size_t R>
  Tensor<T, DynShape<R>> to_tensor() const {
    check<T>(R);
    const bool scalar = shape.empty();
    std::array<index_t, R> e{};
    for (std::size_t k = 0; k < R; ++k) e[k] = scalar ? 1 : shape[k];
    Tensor<T, DynShape<R>> t(DynShape<R>::from_array(e));
    std::array<index_t, R> ix{};
    for (index_t i = 0; i < t.size(); ++i) {
      index_t off = storage_offset;
      if (!scalar)
        for (std::size_t k = 0; k < R; ++k) off += ix[k] * strides[k];
      std::memcpy(static_cast<void*>(t.data() + i), storage.data() + std::size_t(off) * sizeof(T),
                  sizeof(T));
      for (std::size_t k = R; k-- > 0;) {
        if (++ix[k] < e[k]) break;
        ix[k] = 0;
      }
    }
    return t;
  }

 private:
  template <class T>
  void check(std::size_t r) const {
    if (torch_dtype_of<T>() != dtype)
      throw format_error(file, 0,
                         "tensor '" + name + "' has dtype " + io::name(dtype) + ", not " +
                             io::name(torch_dtype_of<T>()));
    if (shape.size() != r && !(shape.empty() && r == 1))
      throw shape_error("tessel: tensor '" + name + "' has rank " + std::to_string(shape.size()) +
                        ", viewed with rank " + std::to_string(r));
  }
};

class TorchFile {
 public:
  static TorchFile open(const std::string& path) { return TorchFile(MappedFile::open(path)); }
  static TorchFile from_bytes(std::span<const std::byte> b, std::string name = "<memory>") {
    return TorchFile(MappedFile::from_bytes(b, std::move(name)));
  }
  explicit TorchFile(MappedFile m) : map_(std::move(m)), zip_(map_.bytes(), map_.name()) { load(); }

  const std::string& path() const noexcept { return map_.name(); }
  /// Tensors in the order the pickle lists them.
  const std::vector<TorchTensor>& tensors() const noexcept { return tensors_; }
  const TorchTensor* find(std::string_view n) const {
    auto it = index_.find(n);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  const TorchTensor& tensor(std::string_view n) const {
    if (const auto* t = find(n)) return *t;
    throw format_error(path(), 0, "no tensor named '" + std::string(n) + "'");
  }

 private:
  // ---- the pickle machine's objects, in an arena (indices, so cycles cannot leak) ----------
  enum class kind {
    none,
    boolean,
    integer,
    real,
    str,
    bytes,
    tuple,
    list,
    dict,
    global,
    storage,
    tensor
  };
  struct obj {
    kind k = kind::none;
    std::int64_t i = 0;  // bool, int; storage: dtype; tensor: index in tensors_
    double f = 0;
    std::string s;                    // str, bytes, global "module name"
    std::vector<std::size_t> items;   // tuple, list; dict: key, value, key, value, ...
    std::span<const std::byte> data;  // storage bytes
  };
  static constexpr const char* kind_names[] = {"None", "bool",   "int",     "float",
                                               "str",  "bytes",  "tuple",   "list",
                                               "dict", "global", "storage", "tensor"};

  void load() {
    const ZipEntry* pkl = nullptr;
    for (const auto& e : zip_.entries()) {
      const auto slash = e.name.find('/');
      if (slash != std::string::npos && e.name.substr(slash) == "/data.pkl") {
        pkl = &e;
        prefix_ = e.name.substr(0, slash + 1);
        break;
      }
    }
    if (!pkl) throw format_error(path(), 0, "no <archive>/data.pkl: not a torch.save zip file");
    if (const auto* bo = zip_.find(prefix_ + "byteorder")) {
      const auto b = zip_.data(*bo);
      if (std::string_view(reinterpret_cast<const char*>(b.data()), b.size()) != "little")
        throw format_error(path(), bo->data_offset, "byteorder is not 'little'");
    }
    const std::size_t root = run(zip_.data(*pkl), pkl->data_offset);
    std::set<std::size_t> seen;
    flatten(root, "", 0, seen);
    for (std::size_t i = 0; i < tensors_.size(); ++i)
      if (!index_.emplace(tensors_[i].name, i).second)
        throw format_error(path(), pkl->data_offset,
                           "two tensors are named '" + tensors_[i].name + "'");
  }

  std::size_t make(kind k) {
    objs_.emplace_back().k = k;
    return objs_.size() - 1;
  }

  std::size_t run(std::span<const std::byte> pickle, std::uint64_t base) {
    ByteReader r(pickle, path(), base);
    std::vector<std::size_t> stack, marks;
    std::map<std::uint32_t, std::size_t> memo;
    std::vector<TorchTensor> built;
    const auto pop = [&](const char* op) {
      if (stack.empty() || (!marks.empty() && marks.back() == stack.size()))
        r.fail(std::string("pickle ") + op + " on an empty stack");
      const auto v = stack.back();
      stack.pop_back();
      return v;
    };
    const auto top = [&](const char* op) -> std::size_t {
      if (stack.empty()) r.fail(std::string("pickle ") + op + " on an empty stack");
      return stack.back();
    };
    const auto pop_mark = [&](const char* op) {
      if (marks.empty()) r.fail(std::string("pickle ") + op + " without a MARK");
      std::vector<std::size_t> v(stack.begin() + std::ptrdiff_t(marks.back()), stack.end());
      stack.resize(marks.back());
      marks.pop_back();
      return v;
    };
    const auto expect = [&](std::size_t o, kind k, const char* what) {
      if (objs_[o].k != k)
        r.fail(std::string(what) + ": expected " + kind_names[int(k)] + ", got " +
               kind_names[int(objs_[o].k)]);
    };
    const auto push_str = [&](std::string_view s, kind k) {
      const auto o = make(k);
      objs_[o].s = std::string(s);
      stack.push_back(o);
    };
    const auto push_int = [&](std::int64_t v) {
      const auto o = make(kind::integer);
      objs_[o].i = v;
      stack.push_back(o);
    };
    const auto line = [&](const char* what) {
      const auto rest = r.bytes().subspan(r.pos());
      const auto* b = reinterpret_cast<const char*>(rest.data());
      const auto* nl = static_cast<const char*>(std::memchr(b, '\n', rest.size()));
      if (!nl) r.fail(std::string("pickle GLOBAL: unterminated ") + what);
      const auto s = r.take_string(std::size_t(nl - b), what);
      r.skip(1, what);
      return s;
    };
    const auto global = [&](std::string_view module, std::string_view nm, std::size_t at) {
      const std::string g = std::string(module) + " " + std::string(nm);
      bool ok = g == "collections OrderedDict" || g == "torch._utils _rebuild_tensor_v2" ||
                g == "torch._utils _rebuild_parameter" ||
                g == "torch._utils _rebuild_parameter_with_state";
      if (module == "torch")
        for (const auto& d : torch_dtypes) ok = ok || nm == d.storage;
      if (!ok)
        r.fail_at(at, "pickle names global '" + g +
                          "', which is not allowed (only tensors and dicts are read)");
      push_str(g, kind::global);
    };
    const auto memo_put = [&](std::uint32_t k) { memo[k] = top("PUT"); };
    const auto memo_get = [&](std::uint32_t k) {
      auto it = memo.find(k);
      if (it == memo.end()) r.fail("pickle GET of unknown memo key " + std::to_string(k));
      stack.push_back(it->second);
    };

    for (;;) {
      const std::size_t at = r.pos();
      const std::uint8_t op = r.u8("pickle opcode");
      switch (op) {
        case 0x80: {  // PROTO
          const auto v = r.u8("protocol");
          if (v > 5) r.fail_at(at, "pickle protocol " + std::to_string(v) + " is not supported");
          break;
        }
        case 0x95:
          r.u64("frame length");
          break;     // FRAME: framing is only a hint
        case '.': {  // STOP
          const auto v = pop("STOP");
          return v;
        }
        case '(':
          marks.push_back(stack.size());
          break;
        case ')':
          stack.push_back(make(kind::tuple));
          break;
        case ']':
          stack.push_back(make(kind::list));
          break;
        case '}':
          stack.push_back(make(kind::dict));
          break;
        case 'N':
          stack.push_back(make(kind::none));
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          const auto o = make(kind::boolean);
          objs_[o].i = op == 0x88;
          stack.push_back(o);
          break;
        }
        case 'J':
          push_int(r.read<std::int32_t>("BININT"));
          break;
        case 'K':
          push_int(r.u8("BININT1"));
          break;
        case 'M':
          push_int(r.u16("BININT2"));
          break;
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
          const auto n = r.u8("LONG1 length");
          if (n > 8) r.fail_at(at, "pickle LONG1 of " + std::to_string(n) + " bytes is too large");
          const auto b = r.take(n, "LONG1 bytes");
          std::uint64_t v = 0;
          for (std::size_t k = 0; k < n; ++k)
            v |= std::uint64_t(std::to_integer<unsigned>(b[k])) << (8 * k);
          if (n > 0 && n < 8 && (std::to_integer<unsigned>(b[n - 1]) & 0x80))
            v |= ~std::uint64_t(0) << (8 * n);  // sign-extend
          push_int(std::int64_t(v));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const auto b = r.take(8, "BINFLOAT");
          std::uint64_t u = 0;
          for (int k = 0; k < 8; ++k)
            u = (u << 8) | std::to_integer<std::uint64_t>(b[std::size_t(k)]);
          const auto o = make(kind::real);
          std::memcpy(&objs_[o].f, &u, 8);
          stack.push_back(o);
          break;
        }
        case 'X':
          push_str(r.take_utf8(r.u32("BINUNICODE length"), "BINUNICODE"), kind::str);
          break;
        case 0x8c:
          push_str(r.take_utf8(r.u8("SHORT_BINUNICODE length"), "SHORT_BINUNICODE"), kind::str);
          break;
        case 0x8d: {
          const auto n = r.u64("BINUNICODE8 length");
          push_str(r.take_utf8(std::size_t(n), "BINUNICODE8"), kind::str);
          break;
        }
        case 'T':
          push_str(r.take_string(r.u32("BINSTRING length"), "BINSTRING"), kind::str);
          break;
        case 'U':
          push_str(r.take_string(r.u8("SHORT_BINSTRING length"), "SHORT_BINSTRING"), kind::str);
          break;
        case 'B':
          push_str(r.take_string(r.u32("BINBYTES length"), "BINBYTES"), kind::bytes);
          break;
        case 'C':
          push_str(r.take_string(r.u8("SHORT_BINBYTES length"), "SHORT_BINBYTES"), kind::bytes);
          break;
        case 't': {
          const auto o = make(kind::tuple);
          objs_[o].items = pop_mark("TUPLE");
          stack.push_back(o);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          const std::size_t n = op - 0x84u;
          std::vector<std::size_t> v(n);
          for (std::size_t k = n; k-- > 0;) v[k] = pop("TUPLEn");
          const auto o = make(kind::tuple);
          objs_[o].items = std::move(v);
          stack.push_back(o);
          break;
        }
        case 'q':
          memo_put(r.u8("BINPUT key"));
          break;
        case 'r':
          memo_put(r.u32("LONG_BINPUT key"));
          break;
        case 0x94:
          memo_put(std::uint32_t(memo.size()));
          break;  // MEMOIZE
        case 'h':
          memo_get(r.u8("BINGET key"));
          break;
        case 'j':
          memo_get(r.u32("LONG_BINGET key"));
          break;
        case '0':
          pop("POP");
          break;
        case '1':
          pop_mark("POP_MARK");
          break;
        case '2':
          stack.push_back(top("DUP"));
          break;
        case 'a': {
          const auto v = pop("APPEND");
          const auto l = top("APPEND");
          expect(l, kind::list, "pickle APPEND target");
          objs_[l].items.push_back(v);
          break;
        }
        case 'e': {
          auto v = pop_mark("APPENDS");
          const auto l = top("APPENDS");
          expect(l, kind::list, "pickle APPENDS target");
          objs_[l].items.insert(objs_[l].items.end(), v.begin(), v.end());
          break;
        }
        case 's': {
          const auto v = pop("SETITEM");
          const auto k = pop("SETITEM");
          const auto d = top("SETITEM");
          expect(d, kind::dict, "pickle SETITEM target");
          objs_[d].items.push_back(k);
          objs_[d].items.push_back(v);
          break;
        }
        case 'u': {
          auto v = pop_mark("SETITEMS");
          if (v.size() % 2) r.fail_at(at, "pickle SETITEMS with an odd number of items");
          const auto d = top("SETITEMS");
          expect(d, kind::dict, "pickle SETITEMS target");
          objs_[d].items.insert(objs_[d].items.end(), v.begin(), v.end());
          break;
        }
        case 'c': {
          const auto module = line("module");
          const auto nm = line("name");
          global(module, nm, at);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const auto nm = pop("STACK_GLOBAL");
          const auto module = pop("STACK_GLOBAL");
          expect(nm, kind::str, "pickle STACK_GLOBAL name");
          expect(module, kind::str, "pickle STACK_GLOBAL module");
          global(objs_[module].s, objs_[nm].s, at);
          break;
        }
        case 'Q':
          stack.push_back(persistent(pop("BINPERSID"), r));
          break;
        case 'R': {
          const auto args = pop("REDUCE");
          const auto fn = pop("REDUCE");
          expect(fn, kind::global, "pickle REDUCE callable");
          expect(args, kind::tuple, "pickle REDUCE arguments");
          stack.push_back(reduce(objs_[fn].s, objs_[args].items, r));
          break;
        }
        case 'b': {  // BUILD: state of an OrderedDict (_metadata) or a parameter; not needed
          pop("BUILD");
          const auto o = top("BUILD");
          if (objs_[o].k != kind::dict && objs_[o].k != kind::tensor)
            r.fail_at(at, std::string("pickle BUILD on a ") + kind_names[int(objs_[o].k)]);
          break;
        }
        default:
          r.fail_at(at, "pickle opcode 0x" + std::string(1, "0123456789abcdef"[op >> 4]) +
                            "0123456789abcdef"[op & 15] + " is not supported");
      }
    }
  }

  std::int64_t as_int(std::size_t o, ByteReader& r, const char* what) const {
    if (objs_[o].k != kind::integer) r.fail(std::string(what) + " is not an int");
    return objs_[o].i;
  }

  // ('storage', <torch.XStorage>, key, location, numel)
  std::size_t persistent(std::size_t pid, ByteReader& r) {
    const auto& t = objs_[pid];
    if (t.k != kind::tuple || t.items.size() != 5 || objs_[t.items[0]].k != kind::str ||
        objs_[t.items[0]].s != "storage")
      r.fail("pickle persistent id is not ('storage', type, key, location, numel)");
    const auto& ty = objs_[t.items[1]];
    const auto& key = objs_[t.items[2]];
    if (ty.k != kind::global || key.k != kind::str)
      r.fail("pickle persistent id has no storage type or key");
    const torch_dtype_info* di = nullptr;
    for (const auto& d : torch_dtypes)
      if (ty.s == std::string("torch ") + d.storage) di = &d;
    if (!di) r.fail("pickle persistent id names '" + ty.s + "', not a storage type");
    const std::int64_t numel = as_int(t.items[4], r, "storage numel");
    const auto* e = zip_.find(prefix_ + "data/" + key.s);
    if (!e) r.fail("storage '" + key.s + "' has no entry " + prefix_ + "data/" + key.s);
    const auto bytes = zip_.data(*e);
    if (numel < 0 || std::uint64_t(numel) > bytes.size() / di->size ||
        std::uint64_t(numel) * di->size != bytes.size())
      r.fail("storage '" + key.s + "' holds " + std::to_string(bytes.size()) + " bytes, not " +
             std::to_string(numel) + " x " + std::to_string(di->size));
    std::string k = key.s;  // make() may move the arena
    const auto o = make(kind::storage);
    objs_[o].i = std::int64_t(di - torch_dtypes.data());
    objs_[o].s = std::move(k);
    objs_[o].data = bytes;
    return o;
  }

  std::size_t reduce(const std::string& fn, const std::vector<std::size_t>& a, ByteReader& r) {
    if (fn == "collections OrderedDict") {
      if (!a.empty()) r.fail("OrderedDict with arguments is not supported");
      return make(kind::dict);
    }
    if (fn == "torch._utils _rebuild_parameter" ||
        fn == "torch._utils _rebuild_parameter_with_state") {
      if (a.size() < 1 || objs_[a[0]].k != kind::tensor)
        r.fail("_rebuild_parameter without a tensor");
      return a[0];
    }
    if (fn != "torch._utils _rebuild_tensor_v2")
      r.fail("pickle calls '" + fn + "', which is not a tensor or dict constructor");
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (a.size() < 4) r.fail("_rebuild_tensor_v2 with fewer than 4 arguments");
    if (objs_[a[0]].k != kind::storage)
      r.fail("_rebuild_tensor_v2: first argument is not a storage");
    const auto& st = objs_[a[0]];
    TorchTensor t;
    t.dtype = torch_dtypes[std::size_t(st.i)].dtype;
    t.storage_key = st.s;
    t.storage = st.data;
    t.file = path();
    t.storage_offset = as_int(a[1], r, "storage offset");
    const auto& size = objs_[a[2]];
    const auto& stride = objs_[a[3]];
    if (size.k != kind::tuple || stride.k != kind::tuple ||
        size.items.size() != stride.items.size())
      r.fail("_rebuild_tensor_v2: size and stride are not tuples of one length");
    if (size.items.size() > 16) r.fail("_rebuild_tensor_v2: more than 16 dimensions");
    for (std::size_t k = 0; k < size.items.size(); ++k) {
      t.shape.push_back(as_int(size.items[k], r, "size"));
      t.strides.push_back(as_int(stride.items[k], r, "stride"));
    }
    // Every element the sizes and strides reach must lie inside the storage.
    const std::int64_t numel = std::int64_t(st.data.size() / info(t.dtype).size);
    std::int64_t n = 1, last = t.storage_offset;
    bool bad = t.storage_offset < 0;
    for (std::size_t k = 0; k < t.shape.size(); ++k) {
      std::int64_t reach;
      bad = bad || t.shape[k] < 0 || t.strides[k] < 0 ||
            __builtin_mul_overflow(n, t.shape[k], &n) ||
            (t.shape[k] > 0 && (__builtin_mul_overflow(t.shape[k] - 1, t.strides[k], &reach) ||
                                __builtin_add_overflow(last, reach, &last)));
    }
    if (bad || (n > 0 && last >= numel))
      r.fail("tensor reaches outside its storage '" + st.s + "' of " + std::to_string(numel) +
             " elements (offset " + std::to_string(t.storage_offset) + ")");
    const auto o = make(kind::tensor);
    objs_[o].i = std::int64_t(pending_.size());
    pending_.push_back(std::move(t));
    return o;
  }

  void flatten(std::size_t o, const std::string& prefix, int depth, std::set<std::size_t>& seen) {
    const auto& x = objs_[o];
    if (x.k == kind::tensor) {
      auto t = pending_[std::size_t(x.i)];
      t.name = prefix.empty() ? "" : prefix.substr(0, prefix.size() - 1);
      tensors_.push_back(std::move(t));
      return;
    }
    if (x.k != kind::dict || depth > 16 || !seen.insert(o).second) return;
    for (std::size_t k = 0; k + 1 < objs_[o].items.size(); k += 2) {
      const auto& key = objs_[objs_[o].items[k]];
      if (key.k != kind::str) continue;  // only named entries hold weights
      flatten(objs_[o].items[k + 1], prefix + key.s + ".", depth + 1, seen);
    }
  }

  MappedFile map_;
  ZipArchive zip_;
  std::string prefix_;
  std::vector<obj> objs_;
  std::vector<TorchTensor> pending_;
  std::vector<TorchTensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

}  // namespace tessel::io
