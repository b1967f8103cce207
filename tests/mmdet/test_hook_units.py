"""FASAHook method by method, with a stand-in runner: seconds, not a training run.

The runner tests (``test_hook.py``, ``test_metrics_and_tools.py``, ``test_resume_mid_epoch.py``)
train through mmengine's Runner; these drive each hook method with exactly the runner
attributes it reads and check what it does against expectations built here: the adaptation
pass against the per-row loss computed by hand from the RoI head's scores, the logged numbers
against the engine's, the checkpoint's generator states against ``rng_states()``.
"""

from __future__ import annotations

import logging
import math
import random
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import CheckpointHook
from mmengine.logging import MessageHub
from mmengine.runner import EpochBasedTrainLoop

import fasa_fast.mmdet.hooks as hooks_module
from fasa_fast.mmdet.hooks import FASAHook, _pipeline_loads_boxes, fasa_stages
from fasa_fast.mmdet.loops import ResumableEpochBasedTrainLoop, rng_states
from tests.mmdet.helpers import NUM_CLASSES, build, cascade_config, mask_rcnn_config, toy_dataset


@pytest.fixture(scope="module")
def ann_file(tmp_path_factory):
    return toy_dataset(tmp_path_factory.mktemp("toy"))["train"]


@pytest.fixture(scope="module")
def model(tmp_path_factory, ann_file):
    return build(mask_rcnn_config(tmp_path_factory.mktemp("cfg"), ann_file))


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append((record.levelname, record.getMessage()))

    def messages(self, level):
        return [m for lvl, m in self.records if lvl == level]


class Loader(list):
    """A dataloader stand-in: iterates over given batches; ``dataset[0]`` is one sample."""

    def __init__(self, batches, sample):
        super().__init__(batches)
        self.dataset = [sample]


def labelled_sample():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    sample = DetDataSample()
    sample.gt_instances = InstanceData(labels=torch.tensor([1]), bboxes=torch.zeros(1, 4))
    return {"inputs": torch.zeros(3, 8, 8), "data_samples": sample}


def stand_in_runner(model, name, *, cfg=None, epoch=0, rank=0, loop=None, built=None):
    """A runner with the attributes FASAHook reads; ``built`` records build_dataloader's
    argument and returns a Loader with one labelled sample."""
    logger = logging.getLogger(f"fasa-hook-test-{name}")
    logger.handlers, logger.propagate = [], False
    logger.setLevel(logging.INFO)
    recorder = Recorder()
    logger.addHandler(recorder)
    scalars = []

    def build_dataloader(loader_cfg):
        if built is not None:
            built.append(loader_cfg)
        return Loader([], labelled_sample())

    return SimpleNamespace(
        model=model,
        cfg=Config(cfg or {}),
        epoch=epoch,
        rank=rank,
        train_loop=loop if loop is not None else SimpleNamespace(),
        logger=logger,
        log=recorder,
        message_hub=MessageHub.get_instance(f"fasa-hook-test-{name}"),
        visualizer=SimpleNamespace(add_scalars=lambda s, step: scalars.append((dict(s), step))),
        scalars=scalars,
        build_dataloader=build_dataloader,
        hooks=[],
    )


# ---- finding the FASA heads, checking pipelines ------------------------------------------------
def test_fasa_stages_of_single_and_cascade_heads(tmp_path, ann_file, model):
    assert fasa_stages(model) == [(None, model.roi_head.bbox_head)]
    cascade = build(cascade_config(tmp_path, ann_file, stages=(0, 2)))
    heads = cascade.roi_head.bbox_head
    assert fasa_stages(cascade) == [(0, heads[0]), (2, heads[2])], (
        "cascade with FASA in stages 0 and 2: expected [(0, head0), (2, head2)]"
    )
    plain = build(mask_rcnn_config(tmp_path, ann_file, fasa=False))
    assert fasa_stages(plain) == []
    assert fasa_stages(torch.nn.Linear(2, 2)) == [], "a model without roi_head: expected []"


@pytest.mark.parametrize(
    "dataset, expected",
    [
        (dict(pipeline=[dict(type="LoadAnnotations")]), True),  # with_bbox defaults to True
        (dict(pipeline=[dict(type="LoadAnnotations", with_bbox=False)]), False),
        (dict(pipeline=[dict(type="LoadImageFromFile"), dict(type="PackDetInputs")]), False),
        (dict(pipeline=["LoadAnnotations"]), False),  # not a transform config
        (dict(type="Wrapper", dataset=dict(pipeline=[dict(type="LoadAnnotations")])), True),
        (dict(type="Wrapper", dataset=dict(pipeline=[])), False),
        (
            dict(
                type="Wrapper", pipeline=[], dataset=dict(pipeline=[dict(type="LoadAnnotations")])
            ),
            False,
        ),
        (dict(type="NoPipeline"), True),  # nothing to inspect: checked on a sample later
        (None, True),
    ],
)
def test_pipeline_loads_boxes(dataset, expected):
    assert _pipeline_loads_boxes(dataset) is expected


def test_hook_arguments_are_checked_and_kept():
    with pytest.raises(ValueError, match="max_images: expected >= 1 or None, got 0"):
        FASAHook(max_images=0)
    FASAHook(max_images=1)  # the smallest sample is allowed
    no_boxes = dict(dataset=dict(pipeline=[dict(type="LoadImageFromFile")]))
    with pytest.raises(ValueError, match="yields no ground-truth labels"):
        FASAHook(adapt_dataloader=no_boxes)
    hook = FASAHook(adapt_scale=[640, 480], max_images=5, seed=3, plot=False)
    got = (hook.adapt_scale, hook.max_images, hook.seed, hook.plot, hook.adapt_dataloader_cfg)
    assert got == ((640, 480), 5, 3, False, None), f"hook settings: got {got}"
    defaults = FASAHook()
    got = (defaults.adapt_scale, defaults.max_images, defaults.seed, defaults.plot)
    assert got == ((1333, 800), None, 0, True), f"hook defaults: got {got}"


# ---- the adaptation loader's config ------------------------------------------------------------
def test_default_adaptation_loader_is_the_held_out_split_without_augmentation(model):
    split = dict(type="FASAHeldOutSplit", dataset=dict(type="LVISV1Dataset"), fraction=0.2)
    train = dict(
        batch_size=4,
        num_workers=3,
        dataset=dict(type="ClassBalancedDataset", oversample_thr=1e-3, dataset=split),
    )
    runner = stand_in_runner(model, "default-loader", cfg=dict(train_dataloader=train))
    loader = FASAHook(adapt_scale=(200, 100)).default_adapt_dataloader(runner)
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="Resize", scale=(200, 100), keep_ratio=True),
        dict(type="PackDetInputs"),
    ]
    expected = dict(
        batch_size=4, num_workers=3, dataset=dict(split, split="adapt", pipeline=pipeline)
    )
    assert loader == expected, f"adaptation loader: expected {expected}, got {loader}"
    # a training loader without batch_size / num_workers: mmengine-like defaults 2 and 0
    bare = stand_in_runner(
        model, "default-loader-2", cfg=dict(train_dataloader=dict(dataset=split))
    )
    loader = FASAHook().default_adapt_dataloader(bare)
    assert (loader["batch_size"], loader["num_workers"]) == (2, 0)


@pytest.mark.parametrize("train", [dict(dataset=dict(type="LVISV1Dataset")), dict(), None])
def test_default_adaptation_loader_needs_a_held_out_split(model, train):
    cfg = {} if train is None else dict(train_dataloader=train)  # None: no training loader
    runner = stand_in_runner(model, f"no-split-{train is None}", cfg=cfg)
    with pytest.raises(ValueError, match="not wrapped in a FASAHeldOutSplit"):
        FASAHook().default_adapt_dataloader(runner)


def test_adaptation_sampler_replaces_the_default_sampler():
    hook = FASAHook(max_images=7, seed=5)
    expected = dict(type="FASAAdaptationSampler", num_samples=7, seed=5)
    for sampler in (None, dict(type="DefaultSampler", shuffle=True)):
        loader = dict(batch_size=2, sampler=sampler)
        got = hook.with_adaptation_sampler(loader)
        assert got == dict(batch_size=2, sampler=expected), f"sampler {sampler}: got {got}"
        assert loader["sampler"] == sampler, "the given loader config must stay unchanged"
    assert hook.with_adaptation_sampler(dict(batch_size=2))["sampler"] == expected
    own = dict(type="FASAAdaptationSampler", num_samples=3, seed=1)
    assert hook.with_adaptation_sampler(dict(sampler=own)) == dict(sampler=own)
    with pytest.raises(ValueError, match="got 'InfiniteSampler'"):
        hook.with_adaptation_sampler(dict(sampler=dict(type="InfiniteSampler")))


# ---- before_train ------------------------------------------------------------------------------
def test_before_train_sets_each_stage_stream_and_builds_the_sampled_loader(tmp_path, ann_file):
    cascade = build(cascade_config(tmp_path, ann_file, stages=(0, 2)))
    heads = cascade.roi_head.bbox_head
    for head in heads:
        if hasattr(head, "fasa_hooked"):
            head.fasa_hooked = False
    built = []
    adapt = dict(batch_size=1, dataset=dict(pipeline=[dict(type="LoadAnnotations")]))
    runner = stand_in_runner(
        cascade, "streams", cfg=dict(randomness=dict(seed=9)), rank=3, built=built
    )
    hook = FASAHook(adapt_dataloader=adapt, max_images=4, seed=2)
    hook.before_train(runner)
    assert hook.stages == [(0, heads[0]), (2, heads[2])]
    streams = [heads[0].fasa.stream, heads[2].fasa.stream]
    assert streams == [(9, 3, 0), (9, 3, 2)], (
        f"streams (run seed, rank, stage): expected [(9, 3, 0), (9, 3, 2)], got {streams}"
    )
    assert heads[0].fasa_hooked and heads[2].fasa_hooked
    sampler = dict(type="FASAAdaptationSampler", num_samples=4, seed=2)
    assert built == [dict(adapt, sampler=sampler)], f"loader built from: {built}"
    assert len(hook.adapt_loader.dataset) == 1


@pytest.mark.parametrize("randomness", [None, dict(seed=None), dict()])
def test_before_train_without_a_run_seed_uses_stream_zero(model, randomness):
    cfg = {} if randomness is None else dict(randomness=randomness)
    adapt = dict(dataset=dict(pipeline=[dict(type="LoadAnnotations")]))
    runner = stand_in_runner(model, "seedless", cfg=cfg, rank=1)
    FASAHook(adapt_dataloader=adapt).before_train(runner)
    assert model.roi_head.bbox_head.fasa.stream == (0, 1, 0)


def test_before_train_refuses_broadcast_buffers_and_models_without_fasa(tmp_path, ann_file, model):
    adapt = dict(dataset=dict(pipeline=[dict(type="LoadAnnotations")]))
    wrapper = SimpleNamespace(broadcast_buffers=True, module=model)
    with pytest.raises(RuntimeError, match="broadcast_buffers=False"):
        FASAHook(adapt_dataloader=adapt).before_train(stand_in_runner(wrapper, "ddp"))
    plain = build(mask_rcnn_config(tmp_path, ann_file, fasa=False))
    with pytest.raises(RuntimeError, match="the model has no FASA box head"):
        FASAHook(adapt_dataloader=adapt).before_train(stand_in_runner(plain, "plain"))


def test_before_train_refuses_an_adaptation_set_without_labels(model):
    from mmdet.structures import DetDataSample

    adapt = dict(dataset=dict(type="Custom"))  # not inspectable: its first sample is checked
    runner = stand_in_runner(model, "unlabelled")
    runner.build_dataloader = lambda cfg: Loader([], {"data_samples": DetDataSample()})
    with pytest.raises(ValueError, match="yields no ground-truth labels"):
        FASAHook(adapt_dataloader=adapt).before_train(runner)


@pytest.mark.parametrize(
    "loop_type, iteration, warns",
    [
        (EpochBasedTrainLoop, 7, True),  # 2 epochs of 3 batches, then 1 batch into the third
        (EpochBasedTrainLoop, 6, False),  # at an epoch boundary
        (ResumableEpochBasedTrainLoop, 7, False),
    ],
)
def test_before_train_warns_when_a_plain_loop_resumes_mid_epoch(model, loop_type, iteration, warns):
    loop = loop_type.__new__(loop_type)  # the attributes the check reads, no runner needed
    loop._iter, loop._epoch, loop.dataloader = iteration, 2, [0, 1, 2]
    adapt = dict(dataset=dict(pipeline=[dict(type="LoadAnnotations")]))
    runner = stand_in_runner(model, f"resume-{loop_type.__name__}-{iteration}", loop=loop)
    FASAHook(adapt_dataloader=adapt).before_train(runner)
    warnings = runner.log.messages("WARNING")
    if warns:
        assert warnings == [
            "FASAHook: resuming at iteration 7, 1 batches into epoch 3, with "
            "EpochBasedTrainLoop, which restarts the epoch from its first batch: those batches "
            "are trained again and FASA folds their features into its statistics twice. Set "
            "train_cfg=dict(type='ResumableEpochBasedTrainLoop') (fasa_fast.mmdet) to continue "
            "after them"
        ], warnings
    else:
        assert warnings == []


def test_before_train_epoch_tells_every_stage_the_epoch(tmp_path, ann_file):
    cascade = build(cascade_config(tmp_path, ann_file, stages=(1, 2)))
    hook = FASAHook()
    hook.stages = fasa_stages(cascade)
    hook.before_train_epoch(SimpleNamespace(epoch=4))
    assert [head.fasa.epoch for _, head in hook.stages] == [4, 4]


# ---- the adaptation pass -------------------------------------------------------------------------
def packed_batches(num):
    from mmdet.testing import demo_mm_inputs

    torch.manual_seed(11)
    return [
        demo_mm_inputs(2, [[3, 64, 64], [3, 64, 64]], num_items=[3, 2], num_classes=NUM_CLASSES)
        for _ in range(num)
    ]


@pytest.mark.parametrize("training", [True, False])
def test_adaptation_pass_accumulates_the_hand_computed_loss_of_every_gt_box(model, training):
    head = model.roi_head.bbox_head
    head.fasa.loss_sum.zero_()
    head.fasa.loss_count.zero_()
    batches = packed_batches(2)
    # expected: softmax cross-entropy (C+1 logits) of the head's scores on the GT boxes, per class
    expected_sum = [0.0] * NUM_CLASSES
    expected_count = [0] * NUM_CLASSES
    model.eval()
    with torch.no_grad():
        for data in batches:
            data = model.data_preprocessor(data, False)
            x = model.extract_feat(data["inputs"])
            boxes = [s.gt_instances.bboxes for s in data["data_samples"]]
            rois = torch.cat(
                [torch.cat([b.new_full((len(b), 1), i), b], 1) for i, b in enumerate(boxes)]
            )
            scores = model.roi_head._bbox_forward(x, rois)["cls_score"].double()
            labels = torch.cat([s.gt_instances.labels for s in data["data_samples"]])
            for row, label in zip(scores.tolist(), labels.tolist(), strict=True):
                top = max(row)
                loss = top + math.log(sum(math.exp(v - top) for v in row)) - row[label]
                expected_sum[label] += loss
                expected_count[label] += 1
    model.train(training)
    hook = FASAHook()
    hook.stages = fasa_stages(model)
    hook.adapt_loader = batches
    images = hook._adaptation_pass(SimpleNamespace(model=model))
    assert images == 4, f"images read: expected 4, got {images}"
    assert model.training is training, "the pass must leave the model's mode as it found it"
    assert head.fasa.loss_count.tolist() == [float(c) for c in expected_count]
    torch.testing.assert_close(
        head.fasa.loss_sum, torch.tensor(expected_sum, dtype=torch.float64), rtol=1e-5, atol=1e-5
    )


def test_adaptation_pass_restores_the_mode_when_it_fails(model):
    hook = FASAHook()
    hook.stages = fasa_stages(model)
    hook.adapt_loader = [{"broken": True}]
    model.train()
    with pytest.raises(Exception):  # noqa: B017 (whatever the preprocessor raises)
        hook._adaptation_pass(SimpleNamespace(model=model))
    assert model.training


# ---- after_train_epoch -----------------------------------------------------------------------
class FakeEngine:
    """The engine calls after_train_epoch makes, recorded; ``adapt`` returns ``summary``."""

    def __init__(self, augmenting, summary, prob, skipped=(0, 0)):
        self.augmenting, self.summary, self.prob = augmenting, summary, prob
        self.skipped_rows = torch.tensor(skipped)
        self.calls = []

    def reduce_adaptation_losses(self):
        self.calls.append("reduce")

    def adapt(self):
        self.calls.append("adapt")
        return self.summary


def summary(**changes):
    out = dict(adaptation=2, num_groups=3, raised=1, lowered=2, moved=4, classes_with_data=5)
    out.update(largest_group_share=0.5, singletons=1)
    out.update(changes)
    return out


def test_after_train_epoch_adapts_logs_and_keeps_the_history(model, monkeypatch):
    engines = [
        FakeEngine(True, summary(), torch.tensor([0.2, 0.4, 0.6, 1.0]), skipped=(3, 0)),
        FakeEngine(True, summary(classes_with_data=0), torch.tensor([1.0, 1.0, 0.5, 0.5])),
    ]
    heads = [SimpleNamespace(fasa=e, fasa_class_frequency=["r", "r", "c", "f"]) for e in engines]
    hook = FASAHook()
    hook.stages = [(0, heads[0]), (2, heads[1])]
    runner = stand_in_runner(model, "after-epoch", epoch=2)
    monkeypatch.setattr(hook, "_adaptation_pass", lambda r: 6 if r is runner else pytest.fail())
    runner.message_hub.update_info("fasa_history", [{"epoch": 2, "fasa.s0/p_rare": 0.5}])
    hook.after_train_epoch(runner)

    assert [e.calls for e in engines] == [["reduce", "adapt"]] * 2, "reduce before adapt, per stage"
    info = runner.log.messages("INFO")
    for stage in ("fasa.s0", "fasa.s2"):
        line = (
            f"{stage}: adaptation 2 on 6 images: 3 groups (largest 50% of the classes, 1 "
            "singletons), 1 raised, 2 lowered, 4 classes moved"
        )
        assert line in info, info
    grouping = runner.message_hub.get_info("fasa_grouping_history")
    assert grouping == [
        dict(epoch=3, head="fasa.s0", **summary()),
        dict(epoch=3, head="fasa.s2", **summary(classes_with_data=0)),
    ], grouping
    warnings = runner.log.messages("WARNING")
    assert len(warnings) == 2, warnings
    assert warnings[0] == (
        "fasa.s2: the adaptation pass found no ground-truth box of any class: the probabilities "
        "stay as they are; check the adaptation set's annotations (FASAHook adapt_dataloader / "
        "FASAHeldOutSplit)"
    )
    assert warnings[1].startswith("fasa.s0: this epoch kept 3 foreground rows with NaN/Inf")
    assert "and 0 rows beyond sync_capacity" in warnings[1]
    assert [e.skipped_rows.tolist() for e in engines] == [[0, 0], [0, 0]], "counters reset"
    scalars = {
        "fasa.s0/p_rare": pytest.approx(0.3),
        "fasa.s0/p_common": pytest.approx(0.6),
        "fasa.s0/p_frequent": pytest.approx(1.0),
        "fasa.s2/p_rare": pytest.approx(1.0),
        "fasa.s2/p_common": pytest.approx(0.5),
        "fasa.s2/p_frequent": pytest.approx(0.5),
    }
    assert runner.scalars == [(scalars, 3)], f"visualizer scalars (epoch 3): {runner.scalars}"
    history = runner.message_hub.get_info("fasa_history")
    assert history == [{"epoch": 2, "fasa.s0/p_rare": 0.5}, {"epoch": 3, **scalars}], history
    assert runner.message_hub.get_scalar("train/fasa.s2/p_common").current() == pytest.approx(0.5)
    assert any(m.startswith("fasa probabilities: fasa.s0/p_rare=0.3, ") for m in info), info


def test_after_train_epoch_in_the_warm_up_only_reports(model, monkeypatch):
    engine = FakeEngine(False, None, torch.tensor([0.5, 0.25]), skipped=(0, 2))
    hook = FASAHook()
    hook.stages = [(None, SimpleNamespace(fasa=engine, fasa_class_frequency=None))]
    monkeypatch.setattr(hook, "_adaptation_pass", lambda runner: pytest.fail("no pass in warm-up"))
    runner = stand_in_runner(model, "warm-up", epoch=0)
    hook.after_train_epoch(runner)
    assert engine.calls == []
    assert runner.log.messages("WARNING") == [
        "fasa: this epoch kept 0 foreground rows with NaN/Inf features and 2 rows beyond "
        "sync_capacity out of the statistics"
    ]
    assert runner.scalars == [({"fasa/p_all": 0.375}, 1)]


def test_after_train_epoch_adapts_when_any_stage_is_past_its_warm_up(model, monkeypatch):
    engines = [
        FakeEngine(False, summary(), torch.ones(1)),
        FakeEngine(True, summary(), torch.ones(1)),
    ]
    hook = FASAHook()
    hook.stages = [
        (i, SimpleNamespace(fasa=e, fasa_class_frequency=None)) for i, e in enumerate(engines)
    ]
    monkeypatch.setattr(hook, "_adaptation_pass", lambda runner: 1)
    hook.after_train_epoch(stand_in_runner(model, "any-stage"))
    assert [e.calls for e in engines] == [["reduce", "adapt"]] * 2


def test_after_train_epoch_reports_the_images_of_all_ranks(model, monkeypatch):
    engine = FakeEngine(True, summary(), torch.ones(1))
    hook = FASAHook()
    hook.stages = [(None, SimpleNamespace(fasa=engine, fasa_class_frequency=None))]
    monkeypatch.setattr(hook, "_adaptation_pass", lambda runner: 6)
    monkeypatch.setattr(hooks_module, "is_distributed", lambda: True)
    monkeypatch.setattr(
        hooks_module, "all_reduce", lambda t, op: t.mul_(2) if op == "sum" else None
    )
    runner = stand_in_runner(model, "all-ranks")
    hook.after_train_epoch(runner)
    assert any("adaptation 2 on 12 images" in m for m in runner.log.messages("INFO"))


# ---- checkpoints: when to gather, what is saved, what is restored -------------------------------
def checkpoint_runner(epoch, iteration, max_epochs=4, max_iters=40, hooks=()):
    return SimpleNamespace(
        epoch=epoch, iter=iteration, max_epochs=max_epochs, max_iters=max_iters, hooks=list(hooks)
    )


@pytest.mark.parametrize(
    "hook_args, epoch, iteration, by_epoch, due",
    [
        (dict(interval=2), 1, 0, True, True),  # epoch 2 of 4 ends: saves
        (dict(interval=2), 0, 0, True, False),
        (dict(interval=2), 1, 0, False, False),  # an iteration's end: not this hook's schedule
        (dict(interval=3, save_last=True), 3, 0, True, True),  # the last epoch
        (dict(interval=3, save_last=False), 3, 0, True, False),
        (dict(interval=2, save_begin=3), 1, 0, True, False),
        (dict(interval=5, by_epoch=False), 0, 9, False, True),  # iteration 10
        (dict(interval=5, by_epoch=False), 0, 8, False, False),
        (dict(interval=5, by_epoch=False, save_begin=20), 0, 9, False, False),
        (dict(interval=5, by_epoch=False), 0, 9, True, False),
        (
            dict(interval=7, by_epoch=False, save_last=True),
            0,
            39,
            False,
            True,
        ),  # the last iteration
        (dict(interval=7, by_epoch=False, save_last=False), 0, 39, False, False),
    ],
)
def test_checkpoint_due_follows_the_checkpoint_hooks(hook_args, epoch, iteration, by_epoch, due):
    runner = checkpoint_runner(epoch, iteration, hooks=[object(), CheckpointHook(**hook_args)])
    assert FASAHook()._checkpoint_due(runner, by_epoch) is due


def test_any_of_several_checkpoint_hooks_makes_a_save_due():
    hooks = [CheckpointHook(interval=3), CheckpointHook(interval=2)]
    assert FASAHook()._checkpoint_due(checkpoint_runner(1, 0, hooks=hooks), True)
    assert not FASAHook()._checkpoint_due(checkpoint_runner(1, 0, hooks=hooks[:1]), True)
    assert not FASAHook()._checkpoint_due(SimpleNamespace(epoch=1), True)  # no hooks at all


def fake_world(monkeypatch, states_of_rank1):
    """Two ranks, this one rank 0: all_gather_object returns [ours, rank 1's]."""
    gathers = []

    def all_gather_object(out, obj):
        gathers.append(obj)
        out[:] = [obj, states_of_rank1]

    monkeypatch.setattr(hooks_module, "is_distributed", lambda: True)
    monkeypatch.setattr(hooks_module, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "all_gather_object", all_gather_object)
    return gathers


@pytest.mark.parametrize("by_epoch", [True, False])
def test_every_rank_states_are_gathered_only_when_a_save_is_due(monkeypatch, by_epoch):
    gathers = fake_world(monkeypatch, "rank 1 states")
    hook = FASAHook()
    save = CheckpointHook(interval=2, by_epoch=by_epoch)
    not_due = checkpoint_runner(0, 0, hooks=[save])
    due = checkpoint_runner(1, 1, hooks=[save])  # epoch 2 / iteration 2 ends
    gather = (
        (lambda r: hook._gather_rng_states_if_saving(r, True))
        if by_epoch
        else (lambda r: hook.after_train_iter(r, 0))
    )
    gather(not_due)
    assert gathers == [] and hook._rng_states_to_save is None
    gather(due)
    assert len(gathers) == 1
    assert hook._rng_states_to_save[1] == "rank 1 states"
    torch.testing.assert_close(hook._rng_states_to_save[0]["torch"], torch.get_rng_state())
    checkpoint = {}
    hook.before_save_checkpoint(None, checkpoint)
    assert checkpoint["fasa_rng_states"][1] == "rank 1 states"
    assert hook._rng_states_to_save is None, "the gathered states are used once"
    later = {}
    hook.before_save_checkpoint(None, later)  # a save outside the schedule: nothing gathered
    assert "fasa_rng_states" not in later


def test_single_process_checkpoint_holds_this_process_states():
    random.seed(4)
    checkpoint = {}
    FASAHook().before_save_checkpoint(None, checkpoint)
    (states,) = checkpoint["fasa_rng_states"]
    expected = rng_states()
    torch.testing.assert_close(states["torch"], expected["torch"])
    torch.testing.assert_close(states["python"][1], expected["python"][1])


def draws():
    import numpy as np

    return random.random(), float(np.random.rand()), torch.rand(1).item()


@pytest.mark.parametrize("resumable", [False, True])
def test_loading_restores_this_rank_states(model, monkeypatch, resumable):
    monkeypatch.setattr(hooks_module, "get_rank", lambda: 1)
    monkeypatch.setattr(hooks_module, "get_world_size", lambda: 2)
    torch.manual_seed(1)
    random.seed(1)
    other = rng_states()
    torch.manual_seed(2)
    random.seed(2)
    mine = rng_states()
    expected = draws()
    if resumable:
        loop = ResumableEpochBasedTrainLoop.__new__(ResumableEpochBasedTrainLoop)
        loop._resume_rng_states = None
    else:
        loop = SimpleNamespace()
    runner = stand_in_runner(model, f"load-{resumable}", loop=loop)
    FASAHook().after_load_checkpoint(runner, {"fasa_rng_states": [other, mine]})
    if resumable:  # restored by the loop, where the interrupted run stood
        assert loop._resume_rng_states is mine
        loop._restore_pending_rng_states()
    assert draws() == expected, "rank 1 must continue from its own saved generators"


def test_loading_states_of_another_world_size_warns_and_restores_nothing(model, monkeypatch):
    torch.manual_seed(3)
    saved = rng_states()
    torch.manual_seed(5)
    expected = torch.rand(1).item()
    torch.manual_seed(5)
    runner = stand_in_runner(model, "world-size")
    FASAHook().after_load_checkpoint(runner, {"fasa_rng_states": [saved, saved]})
    assert torch.rand(1).item() == expected, "generators must be left alone"
    assert runner.log.messages("WARNING") == [
        "FASAHook: the checkpoint holds the random generators of 2 processes, this run has 1: "
        "they are not restored, so the resumed run samples RoIs and augmentations differently "
        "from the interrupted one (FASA's own draws follow its saved counter either way)"
    ]
    FASAHook().after_load_checkpoint(runner, {})  # a checkpoint without them: nothing happens
    assert len(runner.log.messages("WARNING")) == 1


# ---- after_train: the two figures ----------------------------------------------------------------
@pytest.mark.parametrize(
    "plot, rank, drawn", [(True, 0, True), (False, 0, False), (True, 1, False)]
)
def test_after_train_draws_the_figures_on_rank_zero(
    model, monkeypatch, tmp_path, plot, rank, drawn
):
    calls = []
    monkeypatch.setattr(
        hooks_module.reporting,
        "plot_probability_history",
        lambda history, path: calls.append(("history", history, path)),
    )
    monkeypatch.setattr(
        hooks_module.reporting,
        "plot_weight_norms",
        lambda weight, counts, path: calls.append(("norms", weight, counts, path)),
    )
    head = model.roi_head.bbox_head
    hook = FASAHook(plot=plot)
    hook.stages = [(None, head)]
    runner = stand_in_runner(model, f"plots-{plot}-{rank}", rank=rank)
    runner.work_dir = str(tmp_path)
    runner.message_hub.update_info("fasa_history", [{"epoch": 1, "fasa/p_all": 0.5}])
    hook.after_train(runner)
    if not drawn:
        assert calls == []
        return
    assert calls[0] == (
        "history",
        [{"epoch": 1, "fasa/p_all": 0.5}],
        f"{tmp_path}/fasa_probabilities.png",
    )
    _, weight, counts, path = calls[1]
    torch.testing.assert_close(weight, head.fc_cls.weight[:NUM_CLASSES], rtol=0, atol=0)
    assert counts is head.fasa.instance_counts
    assert path == f"{tmp_path}/fasa_weight_norms.png"


def test_after_train_epoch_names_a_single_stage_fasa(model, monkeypatch):
    engine = FakeEngine(True, summary(), torch.ones(1))
    hook = FASAHook()
    hook.stages = [(None, SimpleNamespace(fasa=engine, fasa_class_frequency=None))]
    monkeypatch.setattr(hook, "_adaptation_pass", lambda runner: 2)
    runner = stand_in_runner(model, "single-stage")
    hook.after_train_epoch(runner)
    info = runner.log.messages("INFO")
    assert (
        "fasa: adaptation 2 on 2 images: 3 groups (largest 50% of the classes, 1 singletons), "
        "1 raised, 2 lowered, 4 classes moved" in info
    ), info


def test_after_train_epoch_gathers_states_when_an_epoch_checkpoint_is_due(model, monkeypatch):
    fake_world(monkeypatch, "rank 1 states")
    monkeypatch.setattr(hooks_module, "all_reduce", lambda t, op: None)
    engine = FakeEngine(False, None, torch.ones(1))
    hook = FASAHook()
    hook.stages = [(None, SimpleNamespace(fasa=engine, fasa_class_frequency=None))]
    runner = stand_in_runner(model, "gather-at-epoch-end", epoch=1)
    runner.hooks = [CheckpointHook(interval=2)]  # epoch 2 ends: an epoch checkpoint is due
    runner.iter, runner.max_epochs, runner.max_iters = 7, 4, 16
    hook.after_train_epoch(runner)
    assert hook._rng_states_to_save is not None and hook._rng_states_to_save[1] == "rank 1 states"


def test_after_train_without_history_draws_an_empty_figure(model, monkeypatch, tmp_path):
    histories = []
    monkeypatch.setattr(
        hooks_module.reporting, "plot_probability_history", lambda h, path: histories.append(h)
    )
    monkeypatch.setattr(hooks_module.reporting, "plot_weight_norms", lambda *args: None)
    hook = FASAHook()
    hook.stages = [(None, model.roi_head.bbox_head)]
    runner = stand_in_runner(model, "no-history")
    runner.work_dir = str(tmp_path)
    hook.after_train(runner)
    assert histories == [[]]
    assert runner.log.messages("INFO") == [f"fasa plots written to {tmp_path}"]


def test_cascade_stage_scores_are_that_stage_head_on_the_rois(tmp_path, ann_file):
    # the adaptation pass scores the boxes with each FASA stage's own extractor and head
    from fasa_fast.mmdet.hooks import roi_cls_scores

    cascade = build(cascade_config(tmp_path, ann_file, stages=(0, 2)))
    cascade.eval()
    data = cascade.data_preprocessor(packed_batches(1)[0], False)
    with torch.no_grad():
        x = cascade.extract_feat(data["inputs"])
        boxes = [s.gt_instances.bboxes for s in data["data_samples"]]
        rois = torch.cat(
            [torch.cat([b.new_full((len(b), 1), i), b], 1) for i, b in enumerate(boxes)]
        )
        for stage in (0, 2):
            extractor = cascade.roi_head.bbox_roi_extractor[stage]
            head = cascade.roi_head.bbox_head[stage]
            expected = head(extractor(x[: extractor.num_inputs], rois))[0]
            got = roi_cls_scores(cascade.roi_head, stage, x, rois)
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    hook = FASAHook()
    hook.stages = fasa_stages(cascade)
    hook.adapt_loader = packed_batches(1)
    assert hook._adaptation_pass(SimpleNamespace(model=cascade)) == 2
    counts = [int(head.fasa.loss_count.sum()) for _, head in hook.stages]
    assert counts == [5, 5], f"GT boxes scored per FASA stage: {counts}"


def test_one_group_warning_of_the_engine_reaches_the_run_log(model, monkeypatch):
    # a real engine whose statistics DBSCAN (eps 100: everything within reach) puts into one
    # group: its FASAGroupingWarning is logged as a warning of the run, with the share
    from fasa_fast.engine import FASA

    fasa = FASA(6, 2, [1] * 6, grouping="dbscan", grouping_params=dict(eps=100.0))
    fasa.mean.copy_(torch.arange(12.0).view(6, 2)), fasa.std.fill_(1.0), fasa.seen.fill_(1)
    fasa.start_epoch(fasa.warmup_epochs)
    hook = FASAHook()
    hook.stages = [(None, SimpleNamespace(fasa=fasa, fasa_class_frequency=None))]
    runner = stand_in_runner(model, "one-group", epoch=2)
    monkeypatch.setattr(hook, "_adaptation_pass", lambda r: 4)
    hook.after_train_epoch(runner)
    assert "fasa: adaptation 0 on 4 images: 1 groups (largest 100% of the classes, 0 " in (
        " ".join(runner.log.messages("INFO"))
    )
    warned = [m for m in runner.log.messages("WARNING") if "one group holds" in m]
    assert len(warned) == 1, runner.log.messages("WARNING")
    assert warned[0].startswith(
        "fasa: FASA adaptation 0: one group holds 6 of the 6 grouped classes (100%), so this "
        "adaptation scales (nearly) every sampling probability alike (grouping='dbscan')"
    ), warned[0]
