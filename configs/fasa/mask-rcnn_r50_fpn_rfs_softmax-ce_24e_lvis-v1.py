# Baseline: Mask R-CNN R50-FPN, LVIS v1, repeat factor sampling (t = 1e-3), softmax CE, 24 epochs
# (paper Table 4: 22.8 mask AP). mmdet's LVIS v1 config with its schedule stretched to 2x.
_base_ = "mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py"

max_epochs = 24
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type="MultiStepLR", begin=0, end=max_epochs, by_epoch=True, milestones=[16, 22], gamma=0.1
    ),
]
