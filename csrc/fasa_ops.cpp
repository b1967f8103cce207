// The extension module fasa_fast._C. It defines no op: every schema is declared once, in
// Python, by the op's module (fasa_fast/ops/<op>.py, collected in fasa_fast/ops/_registry.py).
// The kernels register for those schemas per dispatch key (TORCH_LIBRARY_IMPL in
// csrc/cpu/<op>.cpp and csrc/cuda/<op>_launch.cu); the dispatcher accepts an implementation
// before its schema, so importing this module first and defining the schemas after is fine.
#include <Python.h>

// What this library was built against, set by setup.py (fasa_fast._extension.build_info and
// `python -m fasa_fast.info` report it: a library built for another torch is the first suspect).
#ifndef FASA_FAST_BUILD_TORCH
#define FASA_FAST_BUILD_TORCH "unknown"
#endif
#ifndef FASA_FAST_BUILD_CXX
#define FASA_FAST_BUILD_CXX "unknown"
#endif
#ifndef FASA_FAST_BUILD_CUDA
#define FASA_FAST_BUILD_CUDA ""
#endif
#ifndef FASA_FAST_BUILD_CUDA_ARCHS
#define FASA_FAST_BUILD_CUDA_ARCHS ""
#endif
#ifndef FASA_FAST_BUILD_NO_CUDA
#define FASA_FAST_BUILD_NO_CUDA ""
#endif

// Importing fasa_fast._C loads this library and runs the kernels' registrations; the module
// itself carries no Python functions, only its build provenance as string constants.
static struct PyModuleDef fasa_fast_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&fasa_fast_module);
  if (module == nullptr) return nullptr;
  if (PyModule_AddStringConstant(module, "built_for_torch", FASA_FAST_BUILD_TORCH) < 0 ||
      PyModule_AddStringConstant(module, "built_with_cxx", FASA_FAST_BUILD_CXX) < 0 ||
      PyModule_AddStringConstant(module, "built_with_cuda", FASA_FAST_BUILD_CUDA) < 0 ||
      PyModule_AddStringConstant(module, "built_for_cuda_archs", FASA_FAST_BUILD_CUDA_ARCHS) < 0 ||
      PyModule_AddStringConstant(module, "built_without_cuda_because", FASA_FAST_BUILD_NO_CUDA) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
