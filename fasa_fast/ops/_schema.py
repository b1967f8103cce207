"""The op schemas of the ``fasa_fast`` namespace, as declared in ``csrc/fasa_ops.cpp``.

Used to define the ops from Python when the compiled extension is absent, so that both paths
expose one and the same interface; ``tests/test_extension.py`` checks that the strings match.
"""

NAMESPACE = "fasa_fast"

SCHEMAS: dict[str, str] = {
    "segmented_stats_update_": (
        "(Tensor features, Tensor labels, Tensor(a!) mean, Tensor(b!) std, Tensor(c!) seen, "
        "float momentum, bool momentum_on_var) -> ()"
    ),
    "fisher_distance": "(Tensor mean, Tensor std, float eps) -> Tensor",
    "sample_virtual_features": (
        "(Tensor mean, Tensor std, Tensor seen, Tensor prob, Tensor(a!) rng_state, int k, "
        "int capacity) -> (Tensor, Tensor, Tensor)"
    ),
}
