# FASA with Seesaw loss (paper: 26.4 -> 27.5 mask AP). The virtual-feature loss is a separate
# softmax CE over the class logits: Seesaw's cum_samples only ever count real RoIs.
_base_ = "./mask-rcnn_r50_fpn_rfs_seesaw_24e_lvis-v1.py"
custom_imports = dict(imports=["fasa_fast.mmdet"], allow_failed_imports=False)

lvis_train = {{_base_.train_dataloader.dataset.dataset}}
train_dataloader = dict(
    dataset=dict(
        dataset=dict(
            _delete_=True,
            type="FASAHeldOutSplit",
            split="train",
            fraction=0.05,
            max_images=1000,
            dataset=lvis_train,
        )
    )
)
model = dict(
    roi_head=dict(
        bbox_head=dict(
            type="FASAShared2FCBBoxHead",
            fasa=dict(
                data_root={{_base_.data_root}},
                ann_file={{_base_.train_dataloader.dataset.dataset.ann_file}},
            ),
        )
    )
)
custom_hooks = [dict(type="FASAHook", max_images=500)]
