# FASA on the RFS softmax-CE baseline (paper Table 4: 22.8 -> 24.1 mask AP): the FASA box head,
# a held-out split of the training images for the per-epoch adaptation pass (never trained on),
# and the hook that drives it. FASA's options keep the paper's defaults (docs/engine.md).
_base_ = ["./mask-rcnn_r50_fpn_rfs_softmax-ce_24e_lvis-v1.py", "./_base_/fasa.py"]

lvis_train = {{_base_.train_dataloader.dataset.dataset}}
train_dataloader = dict(  # repeat factor sampling over the images not held out
    dataset=dict(dataset=dict(_delete_=True, type="FASAHeldOutSplit", dataset=lvis_train))
)
train_cfg = {{_base_.resumable_train_loop}}
model = dict(roi_head=dict(bbox_head={{_base_.fasa_head}}))
