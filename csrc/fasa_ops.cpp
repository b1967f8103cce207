// The extension module fasa_fast._C. It defines no op: every schema is declared once, in
// Python, by the op's module (fasa_fast/ops/<op>.py, collected in fasa_fast/ops/_registry.py).
// The kernels register for those schemas per dispatch key (TORCH_LIBRARY_IMPL in
// csrc/cpu/*_kernel.cpp and csrc/cuda/*_kernel.cu); the dispatcher accepts an implementation
// before its schema, so importing this module first and defining the schemas after is fine.
#include <Python.h>

// Importing fasa_fast._C loads this library and runs the kernels' registrations; the module
// itself carries no Python functions.
static struct PyModuleDef fasa_fast_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&fasa_fast_module); }
