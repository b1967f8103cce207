# FASA on the RFS softmax-CE baseline (paper Table 4: 22.8 -> 24.1 mask AP). FASA options are
# the paper's defaults (see mask-rcnn_r50_fpn_random_softmax-ce_24e_lvis-v1_fasa.py for the list).
_base_ = "./mask-rcnn_r50_fpn_rfs_softmax-ce_24e_lvis-v1.py"
custom_imports = dict(imports=["fasa_fast.mmdet"], allow_failed_imports=False)

lvis_train = {{_base_.train_dataloader.dataset.dataset}}
train_dataloader = dict(
    dataset=dict(  # repeat factor sampling over the 95% of images not held out
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
