# Baseline of paper Table 4, first row: Mask R-CNN R50-FPN, LVIS v1, random (uniform) image
# sampler, softmax cross-entropy, 24 epochs. mmdet's LVIS v1 config uses repeat factor sampling:
# here the training set is the plain LVISV1Dataset, and the schedule is mmdet's 2x.
_base_ = "mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py"

data_root = "data/lvis_v1/"
train_ann_file = "annotations/lvis_v1_train.json"
lvis_train = dict(
    type="LVISV1Dataset",
    data_root=data_root,
    ann_file=train_ann_file,
    data_prefix=dict(img=""),
    filter_cfg=dict(filter_empty_gt=True, min_size=32),
    pipeline={{_base_.train_pipeline}},
)
train_dataloader = dict(dataset=dict(_delete_=True, **lvis_train))

max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type="MultiStepLR", begin=0, end=max_epochs, by_epoch=True, milestones=[16, 22], gamma=0.1
    ),
]
