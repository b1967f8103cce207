"""One FASA state on every rank, through mmengine's ``Runner``: the demo config trained by two CPU
processes over gloo (``launcher='pytorch'``, DDP), then resumed from rank 0's checkpoint.

Each process starts the gloo group itself before building the runner (mmengine 0.10's
``init_dist`` calls ``torch.cuda.set_device``; the runner skips its own initialisation when a
group exists). The overrides are the CPU ones of ``tests/mmdet/test_configs.py`` plus: 12
generated training images, two images a step, no validation, a checkpoint every epoch. The DDP
wrapper keeps mmengine's ``broadcast_buffers=False``, so no buffer is copied from rank 0 during
training: equal FASA states on both ranks come from the statistics sync, not from DDP.

After each epoch a test-only hook records a checksum of every tensor in every FASA module's
``state_dict`` (statistics, probabilities, groups, adaptation accumulators, the random state)
and its extra state (epoch and adaptation counters), the stream key of the virtual draws, and
the draws a copy of the engine would make next.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from tests.gloo import leave_process_group, run_ranks

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo" / "mask-rcnn_r18_fpn_toy-lvis_fasa.py"
EPOCHS = 2
SEED = 7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(value) -> str:
    if isinstance(value, torch.Tensor):
        array = value.detach().cpu().contiguous()
        header = f"{array.dtype}{tuple(array.shape)}".encode()
        return hashlib.sha256(header + array.numpy().tobytes()).hexdigest()
    return repr(value)


def fasa_modules(model) -> dict:
    from fasa_fast import FASA

    model = getattr(model, "module", model)  # DDP
    return {name: m for name, m in model.named_modules() if isinstance(m, FASA)}


def fasa_snapshot(model) -> dict:
    """Checksums of every FASA state entry, plus this rank's stream (not state)."""
    snapshot = {}
    for name, fasa in fasa_modules(model).items():
        for key, value in fasa.state_dict().items():
            snapshot[f"{name}.{key}"] = digest(value)
        snapshot[f"{name}:stream"] = fasa.stream
        snapshot[f"{name}:draw_key"] = int(fasa._draw_key[0])
        snapshot[f"{name}:counter"] = int(fasa.rng_state[1])
        # the next virtual draw of this rank, made by a copy (the engine itself is untouched)
        features, labels, _ = copy.deepcopy(fasa).sample()
        snapshot[f"{name}:next_draw"] = digest(features)
        snapshot[f"{name}:next_labels"] = digest(labels)
    return snapshot


def weights_digest(model) -> str:
    """One checksum over every non-FASA weight and buffer: one short string, because the ranks'
    results travel through a multiprocessing queue that the parent reads only after both ranks
    have exited (a larger payload would block a rank's exit on the full pipe)."""
    model = getattr(model, "module", model)  # DDP
    items = sorted((k, digest(v)) for k, v in model.state_dict().items() if ".fasa." not in k)
    return hashlib.sha256(repr(items).encode()).hexdigest()


RECORDED: list[tuple[str, dict]] = []


@HOOKS.register_module()
class RecordFASAStateAcrossRanks(Hook):
    """Test-only: the FASA state after every epoch (after FASAHook, before the checkpoint)."""

    priority = "LOW"  # FASAHook is NORMAL, CheckpointHook VERY_LOW

    def __init__(self, dump: bool = False) -> None:
        self.dump = dump  # also write each snapshot into the work dir (a torchrun child)

    def after_train_epoch(self, runner) -> None:
        snapshot = fasa_snapshot(runner.model)
        RECORDED.append((f"epoch {runner.epoch + 1}", snapshot))
        if self.dump:
            path = Path(runner.work_dir) / f"fasa_rank{runner.rank}_epoch{runner.epoch + 1}.json"
            path.write_text(json.dumps(snapshot))


def runner_config(root: Path):
    from mmengine.config import Config

    from tests.mmdet.test_configs import for_cpu

    cfg = Config.fromfile(str(DEMO))
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    cfg.model.train_cfg.rcnn.sampler.num = 64
    for_cpu(cfg._cfg_dict)  # 96-pixel images, no dataloader workers
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.dataset.fraction = 0.25  # 3 held-out images: both ranks adapt on some
    cfg.train_cfg.update(max_epochs=EPOCHS, val_interval=EPOCHS)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.custom_hooks = [
        dict(type="FASAHook", adapt_scale=(96, 96), max_images=30, plot=False),
        dict(type="RecordFASAStateAcrossRanks"),
    ]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=1)
    # and one after every iteration, for the mid-epoch resume
    cfg.custom_hooks.append(dict(type="CheckpointHook", by_epoch=False, interval=1))
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=50)
    cfg.randomness = dict(seed=SEED)
    cfg.launcher = "pytorch"
    cfg.env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend="gloo"))
    # mmengine's default wrapper, with a CPU device list (its own passes [LOCAL_RANK])
    cfg.model_wrapper_cfg = dict(
        type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False
    )
    cfg.work_dir = str(root / "work")
    cfg.load_from = None
    return cfg


def _rank_main(rank: int, world_size: int, port: int, root: str, queue) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        from mmengine.runner import Runner

        from fasa_fast.mmdet.checkpoint_loading import mmengine_checkpoint_loading

        os.chdir(root)  # the demo's relative data_root
        cfg = runner_config(Path(root))
        runner = Runner.from_cfg(copy.deepcopy(cfg))
        assert runner.distributed and runner.world_size == world_size
        runner.train()
        dist.barrier()  # rank 0 has written its checkpoints
        uninterrupted = (fasa_snapshot(runner.model), weights_digest(runner.model))
        mid_iter = len(runner.train_dataloader) + 1  # one batch into epoch 2

        def resume(checkpoint: str, work: str):
            resumed_cfg = copy.deepcopy(cfg)
            resumed_cfg.resume = True
            resumed_cfg.load_from = str(Path(root) / "work" / checkpoint)
            resumed_cfg.work_dir = str(Path(root) / work)
            runner = Runner.from_cfg(resumed_cfg)
            with mmengine_checkpoint_loading():
                runner.train()
            return runner

        # loads rank 0's checkpoint, then no epoch is left to run
        resumed = resume(f"epoch_{EPOCHS}.pth", "resumed")
        recorded = list(RECORDED)
        # from an iteration checkpoint one batch into epoch 2 (before its adaptation):
        # ResumableEpochBasedTrainLoop skips that batch, FASAHook restores each rank's generators
        mid = resume(f"iter_{mid_iter}.pth", "resumed_mid")
        from_mid = (fasa_snapshot(mid.model), weights_digest(mid.model))
        queue.put(
            (rank, recorded, fasa_snapshot(resumed.model), resumed.epoch, uninterrupted, from_mid)
        )
    finally:
        leave_process_group()


def small_toy_lvis(root: Path) -> None:
    """The small generated set both runner tests train on, under ``root/data/toy_lvis``."""
    from fasa_fast.mmdet.toy_lvis import make_toy_lvis

    make_toy_lvis(
        root / "data" / "toy_lvis",
        num_classes=20,
        num_train=12,
        num_val=2,
        num_empty=1,
        copies=2,
        image_size=96,
        seed=0,
    )


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner2")
    small_toy_lvis(root)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    run_ranks(
        _rank_main,
        args=(2, _free_port(), str(root), queue),
        nprocs=2,
    )
    results = dict((r, rest) for r, *rest in (queue.get(timeout=60) for _ in range(2)))
    return root, results


def _state_keys(snapshot: dict) -> list[str]:
    return [k for k in snapshot if ":" not in k]


@pytest.mark.slow
def test_runner_keeps_one_fasa_state_on_both_ranks_after_every_epoch(two_rank_run):
    _, results = two_rank_run
    epochs0, epochs1 = results[0][0], results[1][0]
    assert [e for e, _ in epochs0] == [e for e, _ in epochs1] == ["epoch 1", "epoch 2"]
    for (epoch, first), (_, second) in zip(epochs0, epochs1, strict=True):
        keys = _state_keys(first)
        # every FASA state tensor is compared: statistics, probabilities, groups, random state
        for required in ("mean", "std", "seen", "prob", "groups", "rng_state", "_extra_state"):
            assert any(k.endswith(f".fasa.{required}") for k in keys), (required, keys)
        differ = [k for k in keys if first[k] != second[k]]
        assert not differ, f"{epoch}: FASA state differs between the ranks: {differ}"
        for name in {k.split(":")[0] for k in first if ":" in k}:
            # one shared counter, but each rank its own stream key and so its own draws
            assert first[f"{name}:counter"] == second[f"{name}:counter"], epoch
            assert first[f"{name}:stream"] == (SEED, 0, 0)
            assert second[f"{name}:stream"] == (SEED, 1, 0)
            assert first[f"{name}:draw_key"] != second[f"{name}:draw_key"], epoch
            if epoch == "epoch 2":  # after the warm-up and one adaptation: draws happen
                assert first[f"{name}:next_draw"] != second[f"{name}:next_draw"], epoch
    # the state moved: statistics after the warm-up epoch, the counter after epoch 2
    one, two = epochs0[0][1], epochs0[1][1]
    (name,) = {k.split(":")[0] for k in one if ":" in k}  # the demo has one FASA head
    assert one[f"{name}.seen"] != digest(torch.zeros(20, dtype=torch.long))
    assert one[f"{name}.mean"] != two[f"{name}.mean"]
    assert one[f"{name}:counter"] == 0 < two[f"{name}:counter"]
    assert two[f"{name}._extra_state"] == digest(torch.tensor([1, 1]))  # epoch, adaptations


@pytest.mark.slow
def test_rank_zero_checkpoint_resumes_both_ranks_to_the_saved_fasa_state(two_rank_run):
    root, results = two_rank_run
    saved = torch.load(
        root / "work" / f"epoch_{EPOCHS}.pth", map_location="cpu", weights_only=False
    )
    assert saved["meta"]["epoch"] == EPOCHS
    fasa_keys = [k for k in saved["state_dict"] if ".fasa." in k]
    assert fasa_keys
    for rank, (epochs, resumed, epoch, *_) in results.items():
        assert epoch == EPOCHS, f"rank {rank} resumed at epoch {epoch}"
        at_save = epochs[-1][1]
        for key in fasa_keys:  # the file holds what the ranks had when it was written
            assert digest(saved["state_dict"][key]) == at_save[key], (rank, key)
        differ = [k for k in _state_keys(at_save) if resumed[k] != at_save[k]]
        assert not differ, f"rank {rank}: resumed FASA state differs from the saved one: {differ}"
        for name in {k.split(":")[0] for k in at_save if ":" in k}:
            # the resumed rank draws from its own stream again, from the saved counter
            for what in ("stream", "draw_key", "counter", "next_draw"):
                assert resumed[f"{name}:{what}"] == at_save[f"{name}:{what}"], (rank, what)


@pytest.mark.slow
def test_torchrun_trains_on_cpu_with_the_gloo_backend(tmp_path):
    """The user's command: ``torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch
    --cfg-options env_cfg.dist_cfg.backend=gloo`` on a machine without CUDA, one epoch."""
    small_toy_lvis(tmp_path)
    cfg = runner_config(tmp_path)
    # what the command line and tools/train.py set: launcher, backend, wrapper, work dir
    for key in ("launcher", "env_cfg", "model_wrapper_cfg", "work_dir"):
        cfg.pop(key)
    cfg.train_cfg.max_epochs = 1
    cfg.custom_imports = dict(
        imports=["fasa_fast.mmdet", "tests.mmdet.test_distributed_runner"],
        allow_failed_imports=False,
    )
    cfg.custom_hooks[-1] = dict(type="RecordFASAStateAcrossRanks", dump=True)
    config = tmp_path / "cpu_demo.py"
    cfg.dump(str(config))
    work = tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(REPO / "tools" / "train.py"),
        str(config),
        "--launcher",
        "pytorch",
        "--work-dir",
        str(work),
        "--cfg-options",
        "env_cfg.dist_cfg.backend=gloo",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (work / "epoch_1.pth").is_file(), sorted(p.name for p in work.iterdir())
    logs = "".join(p.read_text() for p in work.glob("*/*.log"))
    assert "Distributed launcher: pytorch" in logs and "GPU number: 2" in logs, logs[:3000]
    ranks = [json.loads((work / f"fasa_rank{r}_epoch1.json").read_text()) for r in range(2)]
    keys = _state_keys(ranks[0])
    assert keys and not [k for k in keys if ranks[0][k] != ranks[1][k]]
    (name,) = {k.split(":")[0] for k in ranks[0] if ":" in k}
    assert ranks[0][f"{name}.seen"] != digest(torch.zeros(20, dtype=torch.long))
    assert ranks[0][f"{name}:draw_key"] != ranks[1][f"{name}:draw_key"]


def test_cpu_launcher_helper_refuses_nccl_and_a_missing_torchrun(monkeypatch):
    from mmengine.config import Config

    from fasa_fast.mmdet.cli import init_distributed_without_cuda

    if torch.cuda.is_available():
        pytest.skip("the helper does nothing where CUDA is available")
    assert not init_distributed_without_cuda(Config(dict(launcher="none")))
    nccl = Config(dict(launcher="pytorch", env_cfg=dict(dist_cfg=dict(backend="nccl"))))
    with pytest.raises(RuntimeError, match=r"env_cfg\.dist_cfg\.backend=gloo"):
        init_distributed_without_cuda(nccl)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    gloo = Config(dict(launcher="pytorch", env_cfg=dict(dist_cfg=dict(backend="gloo"))))
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed_without_cuda(gloo)
    assert not dist.is_initialized()


@pytest.mark.slow
def test_mid_epoch_resume_on_two_ranks_ends_like_the_uninterrupted_run(two_rank_run):
    _, results = two_rank_run
    for rank, (*_, uninterrupted, from_mid) in results.items():
        (full_state, full_weights), (mid_state, mid_weights) = uninterrupted, from_mid
        differ = [k for k in full_state if mid_state[k] != full_state[k]]
        assert not differ, f"rank {rank}: FASA state after the mid-epoch resume differs: {differ}"
        assert mid_weights == full_weights, (
            f"rank {rank}: weights after the mid-epoch resume differ"
        )
