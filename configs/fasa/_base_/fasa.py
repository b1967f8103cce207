# What every FASA config adds to its baseline and that mmengine lets a second base carry: the
# package import and the hook. (Bases may not share top-level keys, and the baselines define
# `model` and `train_dataloader`, so the head type and the held-out split wrapper stay in each
# config; their options default to the paper's values in the classes themselves.)
custom_imports = dict(imports=["fasa_fast.mmdet"], allow_failed_imports=False)
# The adaptation pass reads the held-out side of the FASAHeldOutSplit wrapping the training set.
custom_hooks = [dict(type="FASAHook")]
