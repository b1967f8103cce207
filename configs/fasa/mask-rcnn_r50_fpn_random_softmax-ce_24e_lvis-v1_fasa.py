# FASA on the random-sampler softmax-CE baseline (paper Table 4: 19.3 -> 22.6 mask AP): the FASA
# box head, a held-out split of the training images for the per-epoch adaptation pass (never
# trained on), and the hook that drives it. FASA's options keep the paper's defaults (docs/engine.md).
_base_ = ["./mask-rcnn_r50_fpn_random_softmax-ce_24e_lvis-v1.py", "./_base_/fasa.py"]

train_dataloader = dict(
    dataset=dict(_delete_=True, type="FASAHeldOutSplit", dataset={{_base_.lvis_train}})
)
train_cfg = {{_base_.resumable_train_loop}}
model = dict(roi_head=dict(bbox_head={{_base_.fasa_head}}))
