# Baseline of paper Table 4, first row: Mask R-CNN R50-FPN, LVIS v1, random (uniform) image
# sampler, softmax cross-entropy, 24 epochs. The RFS baseline beside it with the repeat factor
# sampling removed: the training set is the plain LVISV1Dataset.
_base_ = "./mask-rcnn_r50_fpn_rfs_softmax-ce_24e_lvis-v1.py"

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
