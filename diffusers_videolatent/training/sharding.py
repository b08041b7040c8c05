r"""
`--fsdp`: fully sharded data parallel training with PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`) inside the
process group accelerate sets up, on CPUs (gloo) as on GPUs.

accelerate's own FSDP (`accelerate launch --use_fsdp`) needs GPUs: on a machine without them it runs every process
alone (see `check_processes_joined`). `--fsdp` shards the trained model itself: every block of the model's
`*_blocks` lists and its `mid_block`s is one FSDP unit, the rest of the model the root unit, so each process holds
`1 / num_processes` of the weights, gradients and optimizer state, and gathers one unit's weights only while that unit
runs. Gradients are averaged over the processes as DDP averages them, so a sharded run trains as DDP and as one
process at the same global batch. Checkpoints keep the shards: `torch.distributed.checkpoint` writes the model, the
optimizer and the EMA (sharded like the model) into the checkpoint's `fsdp/` folder, each process its own shard,
beside accelerate's state (random states, schedule, data order).
"""

import os
from collections.abc import Callable, Iterable

import torch
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.utils import DistributedType, convert_outputs_to_fp32


SHARDED_STATE_FOLDER = "fsdp"


def _dtensor_class() -> type | None:
    """`DTensor`, or `None` on a torch without it (then no tensor is sharded)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return None
    return DTensor


def _is_sharded(tensor: torch.Tensor) -> bool:
    dtensor = _dtensor_class()
    return dtensor is not None and isinstance(tensor, dtensor)


# the launches `--fsdp` shards inside: accelerate's DDP process group, on CPUs or GPUs
_SHARDED_DISTRIBUTED_TYPES = (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


def check_sharded_launch(accelerator: Accelerator, args) -> None:
    r"""Refuses `--fsdp` where it cannot shard: LoRA, fp16, one process, accelerate's own FSDP or DeepSpeed."""
    if getattr(args, "rank", None) is not None:
        raise ValueError("`--fsdp` trains whole models; `--rank` (LoRA) trains a few adapters: use DDP for LoRA.")
    if accelerator.mixed_precision == "fp16":
        raise ValueError("`--fsdp` runs in float32 or `--mixed_precision bf16`; fp16's loss scaling is not sharded.")
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        raise ValueError(
            f"`--fsdp` needs PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`, torch 2.6 or newer), but this is "
            f"torch {torch.__version__}."
        ) from None
    if accelerator.num_processes < 2:
        raise ValueError(
            "`--fsdp` shards the model over several processes, but this run has one: launch it with "
            "`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N` on CPUs, or "
            "`accelerate launch --multi_gpu --num_processes N` on GPUs."
        )
    if accelerator.distributed_type not in _SHARDED_DISTRIBUTED_TYPES:
        raise ValueError(
            f"`--fsdp` shards the model inside a DDP-style launch (multi-CPU or multi-GPU), but accelerate runs this "
            f"one as {accelerator.distributed_type.value}: use either accelerate's own sharding (`--use_fsdp`, GPUs "
            "only) or `--fsdp`, not both."
        )


def _unit_names(model: torch.nn.Module) -> list[str]:
    """The outermost blocks of `model`: the entries of its `*_blocks` lists and its `mid_block`s."""
    names = []
    for name, _ in model.named_modules():
        parts = name.split(".")
        is_block = name and (
            parts[-1] in ("mid_block", "mid_blocks")
            or (parts[-1].isdigit() and len(parts) > 1 and parts[-2].endswith("blocks"))
        )
        if is_block and not any(name.startswith(outer + ".") for outer in names):
            names.append(name)
    return names


def shard_model(model: torch.nn.Module, accelerator: Accelerator) -> torch.nn.Module:
    r"""
    Shards `model` in place over the processes of `accelerator` (each block of `_unit_names` one FSDP unit, then the
    whole model as the root unit) and runs its forward under accelerate's autocast when `--mixed_precision bf16`, as
    `accelerator.prepare` would. Call it on every process, on identically initialised models, before creating the
    optimizer (the parameters become `DTensor`s).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model.to(accelerator.device)
    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    modules = dict(model.named_modules())
    for name in reversed(_unit_names(model)):  # innermost first, as FSDP2 requires
        fully_shard(modules[name], mesh=mesh)
    fully_shard(model, mesh=mesh)
    if accelerator.mixed_precision == "bf16":
        forward = model.forward

        def forward_in_autocast(*args, **kwargs):
            with accelerator.autocast():
                return forward(*args, **kwargs)

        model.forward = convert_outputs_to_fp32(forward_in_autocast)
    return model


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole of a sharded `DTensor` (gathered from every process: call it on all of them), or `tensor` itself."""
    return tensor.full_tensor() if _is_sharded(tensor) else tensor


def all_finite(tensors: Iterable[torch.Tensor]) -> list[bool]:
    r"""
    Whether each tensor holds only finite values. Sharded tensors are checked on every process and the answers
    combined, so every process gets the same list (call it on all of them).
    """
    tensors = list(tensors)
    sharded = [_is_sharded(t) for t in tensors]
    flags = [bool(torch.isfinite(t.to_local() if is_sharded else t).all()) for t, is_sharded in zip(tensors, sharded)]
    if any(sharded) and torch.distributed.is_initialized():
        combined = torch.tensor([float(flag) for flag in flags])
        torch.distributed.all_reduce(combined, op=torch.distributed.ReduceOp.MIN)
        flags = [bool(value) for value in combined.tolist()]
    return flags


class ShardedTraining:
    r"""
    The sharded state of a `--fsdp` run: the model sharded by [`shard_model`], its optimizer and, with `--use_ema`,
    its EMA, with what the scripts need of them: the optimizer wrapped as `accelerator.prepare` wraps one (it steps
    only where gradients are synchronised), sharded checkpoints, and whole copies of the model for validation and the
    final save.

    Args:
        accelerator (`Accelerator`): The run's accelerator.
        model (`torch.nn.Module`): The model sharded by [`shard_model`].
        optimizer (`torch.optim.Optimizer`): Its optimizer, over its (sharded) trained parameters.
        build_whole (`Callable`): Makes an unsharded model of the same configuration as the one `whole_model`
            returns (its weights are replaced).
        whole_prefix (`str`, *optional*, defaults to `""`): That model's name in the sharded model, with its
            trailing dot (`"vae."` for the VAE inside its training module); the whole sharded model when empty.
        ema (`diffusers.training_utils.EMAModel`, *optional*): The EMA of the trained parameters.
        ema_parameters (`list[torch.nn.Parameter]`, *optional*): The parameters the EMA averages, in its order.
    """

    def __init__(
        self,
        accelerator: Accelerator,
        model: torch.nn.Module,
        optimizer,
        build_whole: Callable[[], torch.nn.Module],
        whole_prefix: str = "",
        ema=None,
        ema_parameters=None,
    ):
        self.accelerator = accelerator
        self.model = model
        self.optimizer = optimizer
        self.build_whole = build_whole
        self.whole_prefix = whole_prefix
        self.ema = ema
        names = {id(parameter): name for name, parameter in model.named_parameters()}
        self.ema_names = [names[id(parameter)] for parameter in ema_parameters or []]

    def prepared_optimizer(self) -> AcceleratedOptimizer:
        """The optimizer as `accelerator.prepare` returns one, but not registered: its state is saved by `save`."""
        return AcceleratedOptimizer(self.optimizer, device_placement=False, scaler=None)

    def _state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        state = {"model": model_state, "optimizer": optimizer_state}
        if self.ema is not None:
            state["ema"] = dict(zip(self.ema_names, self.ema.shadow_params))
            state["ema_optimization_step"] = self.ema.optimization_step
        return state

    def save(self, folder: str) -> None:
        """Writes every process's shard of the model, the optimizer and the EMA to `folder/fsdp` (on all processes)."""
        import torch.distributed.checkpoint as dcp

        dcp.save(self._state(), checkpoint_id=os.path.join(folder, SHARDED_STATE_FOLDER))

    def load(self, folder: str) -> None:
        """Restores what `save` wrote to `folder` (on all processes, sharded as this run shards)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        path = os.path.join(folder, SHARDED_STATE_FOLDER)
        if not os.path.isdir(path):
            raise ValueError(f"{folder!r} has no sharded state ({SHARDED_STATE_FOLDER}/): it was not saved by --fsdp.")
        state = self._state()
        dcp.load(state, checkpoint_id=path)  # in place: into the model's and the EMA's shards
        set_state_dict(
            self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
        )
        if self.ema is not None:
            self.ema.optimization_step = int(state["ema_optimization_step"])

    def whole_model(self):
        r"""
        A whole, unsharded copy of the model (or of its submodule `whole_prefix`) on the main process, with the EMA
        weights when there is an EMA (what the scripts validate and save); `None` on the other processes. Gathers the
        shards: call it on every process.
        """
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(self.model, options=options)  # whole on the main process, empty elsewhere
        if self.ema is not None:
            for name, shadow in zip(self.ema_names, self.ema.shadow_params):
                whole = full_tensor(shadow)
                if self.accelerator.is_main_process:
                    state[name] = whole.cpu()
        if not self.accelerator.is_main_process:
            return None
        model = self.build_whole()
        prefix = self.whole_prefix
        state = {name[len(prefix) :]: value for name, value in state.items() if name.startswith(prefix)}
        model.load_state_dict(state, strict=True)
        return model.to(self.accelerator.device)
