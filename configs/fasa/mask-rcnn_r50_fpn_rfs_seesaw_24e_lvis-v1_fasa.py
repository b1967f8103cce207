# FASA with Seesaw loss (paper: 26.4 -> 27.5 mask AP). The virtual features are scored with
# Seesaw's own loss, as the paper combines the two (virtual_loss="seesaw": mitigation and
# compensation from the head's cum_samples, objectness included); cum_samples still count real
# RoIs only.
_base_ = ["./mask-rcnn_r50_fpn_rfs_seesaw_24e_lvis-v1.py", "./_base_/fasa.py"]
# The wiring below repeats the softmax-CE FASA config's: it sets keys the baseline defines, which
# mmengine refuses in a second base (see _base_/fasa.py).

lvis_train = {{_base_.train_dataloader.dataset.dataset}}
train_dataloader = dict(  # repeat factor sampling over the images not held out
    dataset=dict(dataset=dict(_delete_=True, type="FASAHeldOutSplit", dataset=lvis_train))
)
# a mid-epoch (iteration) checkpoint resumes after the batches it had trained (fasa_fast.mmdet)
train_cfg = dict(type="ResumableEpochBasedTrainLoop")
model = dict(
    roi_head=dict(
        bbox_head=dict(
            type="FASAShared2FCBBoxHead",
            fasa=dict(
                data_root={{_base_.data_root}},
                ann_file={{_base_.train_dataloader.dataset.dataset.ann_file}},
                virtual_loss="seesaw",
            ),
        )
    )
)
