# What every FASA config adds to its baseline, written once. A second base may only carry keys
# the baseline does not define: the package import and the hook. The rest belongs under the
# baseline's own keys (`model`, `train_cfg`, `train_dataloader`): each FASA config sets them from
# the variables below (`bbox_head={{_base_.fasa_head}}`) and wraps its baseline's training set in
# the held-out split itself (where that set sits differs per baseline).
custom_imports = dict(imports=["fasa_fast.mmdet"], allow_failed_imports=False)
# The adaptation pass reads the held-out side of the FASAHeldOutSplit wrapping the training set.
custom_hooks = [dict(type="FASAHook")]

# FASA's options: the per-class counts come from the training annotations of mmdet's
# LVIS v1 configs (their data_root and train ann_file); the rest keep the paper's defaults.
fasa_options = dict(data_root="data/lvis_v1/", ann_file="annotations/lvis_v1_train.json")
# with a Seesaw-loss baseline the virtual features are scored with Seesaw's own loss
fasa_seesaw_options = dict(fasa_options, virtual_loss="seesaw")
# merged into the baseline's box head: its type and FASA's options change, nothing else
fasa_head = dict(type="FASAShared2FCBBoxHead", fasa=fasa_options)
fasa_seesaw_head = dict(fasa_head, fasa=fasa_seesaw_options)
# a mid-epoch (iteration) checkpoint resumes after the batches it had trained (fasa_fast.mmdet)
resumable_train_loop = dict(type="ResumableEpochBasedTrainLoop")
