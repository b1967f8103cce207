# Baseline: Mask R-CNN R50-FPN with Seesaw loss and NormedLinear, RFS, 24 epochs (paper: 26.4
# mask AP): mmdet's own config, unchanged.
_base_ = "mmdet::seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss_sample1e-3-ms-2x_lvis-v1.py"
