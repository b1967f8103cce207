# Baseline: Cascade Mask R-CNN R101-FPN with Seesaw loss, RFS, 24 epochs: mmdet's own config.
_base_ = "mmdet::seesaw_loss/cascade-mask-rcnn_r101_fpn_seesaw-loss_sample1e-3-ms-2x_lvis-v1.py"
