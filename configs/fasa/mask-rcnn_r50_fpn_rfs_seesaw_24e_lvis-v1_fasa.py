# FASA with Seesaw loss (paper: 26.4 -> 27.5 mask AP). The virtual features are scored with
# Seesaw's own loss, as the paper combines the two (virtual_loss="seesaw": mitigation and
# compensation from the head's cum_samples, objectness included); cum_samples still count real
# RoIs only.
_base_ = ["./mask-rcnn_r50_fpn_rfs_seesaw_24e_lvis-v1.py", "./_base_/fasa.py"]
# the softmax-CE config's wiring again: it sets keys the baseline defines, which a base may not

lvis_train = {{_base_.train_dataloader.dataset.dataset}}
train_dataloader = dict(  # repeat factor sampling over the images not held out
    dataset=dict(dataset=dict(_delete_=True, type="FASAHeldOutSplit", dataset=lvis_train))
)
train_cfg = {{_base_.resumable_train_loop}}
model = dict(roi_head=dict(bbox_head={{_base_.fasa_seesaw_head}}))
