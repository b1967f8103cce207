// Op schemas of the fasa_fast namespace: declared once here, implemented per dispatch key in
// csrc/cpu/*_kernel.cpp and csrc/cuda/*_kernel.cu. fasa_fast/ops/_schema.py mirrors these
// strings for the pure-PyTorch fallback; tests/test_extension.py checks that the two agree.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(fasa_fast, m) {
  m.def(
      "segmented_stats_update_(Tensor features, Tensor labels, Tensor(a!) mean, "
      "Tensor(b!) std, Tensor(c!) seen, float momentum, bool momentum_on_var) -> ()");
  m.def("fisher_distance(Tensor mean, Tensor std, float eps) -> Tensor");
  m.def(
      "sample_virtual_features(Tensor mean, Tensor std, Tensor seen, Tensor prob, "
      "Tensor(a!) rng_state, int k, int capacity) -> (Tensor, Tensor, Tensor)");
}

// Importing fasa_fast._C loads this library and runs the registrations above; the module
// itself carries no Python functions.
static struct PyModuleDef fasa_fast_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&fasa_fast_module); }
