# The README's demo: a small Mask R-CNN (ResNet-18 FPN, no pretrained weights: nothing is
# downloaded) trained with FASA on the generated long-tailed LVIS-format dataset
# (python -m fasa_fast.mmdet.toy_lvis), on CPU, then evaluated with LVIS AP / APr / APc / APf.
_base_ = ["mmdet::_base_/models/mask-rcnn_r50_fpn.py", "mmdet::_base_/default_runtime.py"]
custom_imports = dict(imports=["fasa_fast.mmdet"], allow_failed_imports=False)

data_root = "data/toy_lvis/"
num_classes = 20
image_scale = (128, 128)
max_epochs = 12

model = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(
            type="FASAShared2FCBBoxHead",
            in_channels=64,
            fc_out_channels=256,
            num_classes=num_classes,
            fasa=dict(
                data_root=data_root, ann_file="annotations/lvis_v1_train.json", warmup_epochs=1
            ),
        ),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=num_classes),
    ),
    train_cfg=dict(rpn_proposal=dict(max_per_img=300), rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(max_per_img=300), rcnn=dict(score_thr=0.0001, max_per_img=100)),
)

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=image_scale, keep_ratio=True),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(
        type="PackDetInputs",
        meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor"),
    ),
]
toy_train = dict(
    type="LVISV1Dataset",
    data_root=data_root,
    ann_file="annotations/lvis_v1_train.json",
    data_prefix=dict(img=""),
    pipeline=train_pipeline,
)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=True),
    dataset=dict(
        type="FASAHeldOutSplit",
        split="train",
        fraction=0.1,
        max_images=100,
        strategy="random",  # the split the demo's reported numbers were measured with
        seed=0,
        dataset=toy_train,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type="LVISV1Dataset",
        data_root=data_root,
        ann_file="annotations/lvis_v1_val.json",
        data_prefix=dict(img=""),
        test_mode=True,
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(
    type="LVISMetric",
    ann_file=data_root + "annotations/lvis_v1_val.json",
    metric=["bbox", "segm"],
)
test_evaluator = val_evaluator

# continues a mid-epoch (iteration) checkpoint after the batches it had trained (fasa_fast.mmdet)
train_cfg = dict(
    type="ResumableEpochBasedTrainLoop", max_epochs=max_epochs, val_interval=max_epochs
)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type="MultiStepLR", begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
custom_hooks = [dict(type="FASAHook", adapt_scale=image_scale, max_images=30)]
default_hooks = dict(
    logger=dict(type="LoggerHook", interval=20),
    checkpoint=dict(type="CheckpointHook", interval=max_epochs),
)
