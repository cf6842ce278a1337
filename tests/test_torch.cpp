// PyTorch torch.save files: state dicts written by Debian's PyTorch (tools/golden/io_torch.py),
// checked against the same tensors saved by numpy; the mnist-ddpm checkpoint against its
// safetensors twin; pickles naming other globals are refused.

#include <doctest/doctest.h>

#include "skip.hpp"

#include <filesystem>

#include <tessel/io/formats/npy.hpp>
#include <tessel/io/formats/safetensors.hpp>
#include <tessel/io/formats/torch.hpp>
#include "io_test_zip.hpp"

using namespace tessel;
using namespace tessel::io;
namespace fs = std::filesystem;

namespace {
const std::string data_dir = std::string(TESSEL_TEST_DATA_DIR) + "/io/";

template <class T, std::size_t R, class U = T>
void check_same(const TorchTensor& t, const NpyArray& ref) {
  CAPTURE(t.name);
  const auto a = t.to_tensor<T, R>();
  const auto b = ref.to_tensor<U, R>();
  REQUIRE(a.size() == b.size());
  for (std::size_t k = 0; k < R; ++k) CHECK(a.extent(k) == b.extent(k));
  for (index_t i = 0; i < a.size(); ++i) CHECK(to_f32(a.data()[i]) == to_f32(b.data()[i]));
}
}  // namespace

TEST_CASE("torch: a state dict of many dtypes and layouts matches numpy's copy") {
  const auto f = TorchFile::open(data_dir + "torch_state.pt");
  const auto ref = NpzFile::open(data_dir + "torch_state.npz");
  CHECK(f.tensors().size() == ref.arrays().size());
  CHECK(f.tensors()[0].name == "f32");  // pickle order
  check_same<float, 2>(f.tensor("f32"), ref.array("f32"));
  check_same<f16, 2>(f.tensor("f16"), ref.array("f16"));
  check_same<bf16, 1, float>(f.tensor("bf16"), ref.array("bf16"));
  check_same<std::int8_t, 2>(f.tensor("i8"), ref.array("i8"));
  check_same<std::int32_t, 1>(f.tensor("i32"), ref.array("i32"));
  check_same<float, 2>(f.tensor("param"), ref.array("param"));
  check_same<float, 2>(f.tensor("transposed"), ref.array("transposed"));
  check_same<float, 2>(f.tensor("sliced"), ref.array("sliced"));
  check_same<float, 1>(f.tensor("sliced_step"), ref.array("sliced_step"));
  check_same<float, 1>(f.tensor("scalar"), ref.array("scalar"));
  check_same<float, 2>(f.tensor("nested.w"), ref.array("nested.w"));
  const auto i64 = f.tensor("i64").to_tensor<std::int64_t, 1>();
  const auto i64r = ref.get<std::int64_t, 1>("i64");
  for (index_t i = 0; i < 3; ++i) CHECK(i64(i) == i64r(i));

  const auto& tr = f.tensor("transposed");
  CHECK(!tr.is_contiguous());
  CHECK(tr.shape == std::vector<std::int64_t>{6, 4});
  CHECK(tr.strides == std::vector<std::int64_t>{1, 6});
  const auto v = tr.view<float, 2>();  // zero copy, strided
  const auto c = tr.to_tensor<float, 2>();
  for (index_t i = 0; i < 6; ++i)
    for (index_t j = 0; j < 4; ++j) CHECK(v(i, j) == c(i, j));
  CHECK(f.tensor("sliced").storage_offset == 5);
  CHECK(f.tensor("sliced_step").strides == std::vector<std::int64_t>{4});
  CHECK(f.tensor("nested.w").strides == std::vector<std::int64_t>{1, 2});
  CHECK_THROWS_WITH_AS((f.tensor("f32").to_tensor<f16, 2>()),
                       doctest::Contains("has dtype float32, not float16"), format_error);
}

TEST_CASE("torch: pickles naming other globals are refused, nothing runs") {
  CHECK_THROWS_WITH_AS(TorchFile::open(data_dir + "torch_evil_system.pt"),
                       doctest::Contains("global 'posix system', which is not allowed"),
                       format_error);
  CHECK_THROWS_WITH_AS(TorchFile::open(data_dir + "torch_evil_eval.pt"),
                       doctest::Contains("global '__builtin__ eval', which is not allowed"),
                       format_error);
  CHECK_THROWS_WITH_AS(TorchFile::open(data_dir + "npz_pair.npz"),
                       doctest::Contains("no <archive>/data.pkl"), format_error);
}

TEST_CASE("torch: ddpm_mnist.pth equals ddpm_mnist.safetensors bit for bit" *
          doctest::test_suite("needs_models")) {
  const std::string dir = tessel_test::models_dir() + "/mnist-ddpm/";
  if (!tessel_test::have(dir + "ddpm_mnist.pth", "the mnist-ddpm checkpoint")) return;
  const auto pt = TorchFile::open(dir + "ddpm_mnist.pth");
  const auto st = SafetensorsFile::open(dir + "ddpm_mnist.safetensors");
  REQUIRE(pt.tensors().size() == st.tensors().size());
  CHECK(pt.tensors().size() == 29);
  for (const auto& t : pt.tensors()) {
    CAPTURE(t.name);
    const auto& s = st.tensor(t.name);
    CHECK(t.dtype == torch_dtype::F32);
    CHECK(t.shape == s.shape);
    CHECK(t.is_contiguous());
    const auto n = std::size_t(t.n_elements()) * 4;
    REQUIRE(s.bytes().size() == n);
    CHECK(std::memcmp(t.storage.data() + t.storage_offset * 4, s.bytes().data(), n) == 0);
  }
}

TEST_CASE("torch: the ZIP64 layout (large checkpoints) reads like the classic one") {
  std::string storage(16, '\0');
  const float v[4] = {1.5f, -2.f, 3.25f, 4.f};
  std::memcpy(storage.data(), v, 16);
  for (bool zip64 : {false, true}) {
    CAPTURE(zip64);
    const auto b = io_test::torch_file(io_test::pickle(), storage, 0, zip64);
    const auto f = TorchFile::from_bytes(b, "zip64");
    const auto w = f.tensor("w").to_tensor<float, 2>();
    CHECK(w(0, 0) == 1.5f);
    CHECK(w(1, 0) == 3.25f);
    CHECK(w(1, 1) == 4.f);
  }
}
