# FASA in every stage of Cascade Mask R-CNN R101-FPN with Seesaw loss, RFS, 24 epochs. mmengine
# replaces lists whole, so the three stage heads are spelled out: mmdet's, with the FASA type and
# the `fasa` options added. Each stage keeps its own class statistics and probabilities.
_base_ = ["./cascade-mask-rcnn_r101_fpn_rfs_seesaw_24e_lvis-v1.py", "./_base_/fasa.py"]

lvis_train = {{_base_.train_dataloader.dataset.dataset}}
train_dataloader = dict(  # repeat factor sampling over the images not held out
    dataset=dict(dataset=dict(_delete_=True, type="FASAHeldOutSplit", dataset=lvis_train))
)
fasa = {{_base_.fasa_seesaw_options}}  # see the Mask R-CNN Seesaw FASA config


def stage_head(target_stds):
    return dict(
        type="FASAShared2FCBBoxHead",
        in_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=1203,
        bbox_coder=dict(
            type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=target_stds
        ),
        reg_class_agnostic=True,
        cls_predictor_cfg=dict(type="NormedLinear", tempearture=20),
        loss_cls=dict(type="SeesawLoss", p=0.8, q=2.0, num_classes=1203, loss_weight=1.0),
        loss_bbox=dict(type="SmoothL1Loss", beta=1.0, loss_weight=1.0),
        fasa=fasa,
    )


train_cfg = {{_base_.resumable_train_loop}}
model = dict(
    roi_head=dict(
        bbox_head=[
            stage_head([0.1, 0.1, 0.2, 0.2]),
            stage_head([0.05, 0.05, 0.1, 0.1]),
            stage_head([0.033, 0.033, 0.067, 0.067]),
        ]
    )
)
