"""Device choice, determinism and run-level params."""
from __future__ import annotations

import os
import platform
import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from nascore.config import ParamsError, spec


@dataclass(frozen=True)
class VarianceParams:
    """Seed variance (the `variance` stage of each cell method): N searches x M trainings of each search's
    genotype on one dataset, reported as mean +- std over the searches and, apart, the best of N."""

    searches: int = spec(1, ge=1, le=20, doc="N: searches, seeds run.seed + i (1 with trainings 1: not run)")
    trainings: int = spec(1, ge=1, le=20, doc="M: trainings of each search's genotype, seeds run.seed + j")
    budget: str | None = spec(None, doc="the profile whose method params these runs use (null: the active "
                                        "one); a smaller budget than the headline run's keeps N x M affordable")
    dataset: Literal["cifar10", "cifar100"] = "cifar10"


@dataclass(frozen=True)
class RunParams:
    """Run-level settings (params/run.yaml `run:`), shared by every method and stage."""

    seed: int = spec(0, ge=0, le=2**32 - 1, doc="numpy's seed range (np.random.seed)")
    deterministic: bool = spec(False, doc="seeded, cudnn deterministic, no benchmark autotune")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = spec(True, doc="bf16 autocast on GPU (ignored on CPU)")
    channels_last: bool = spec(True, doc="channels_last memory format on GPU")
    threads: int | None = spec(None, ge=1, doc="CPU threads for torch (null = torch default)")
    cpu_isa: Literal["avx2", "native"] = spec(
        "native", doc="the x86 instruction set the CPU kernels may use (ATen, oneDNN, MKL): avx2 computes the same "
                      "floats on any x86 CPU with AVX2, AVX-512 ones included (what makes a CPU profile's reports "
                      "and CI's baseline reproducible across machines); native lets each library pick its fastest")
    tracking_uri: str | None = spec(None, doc="MLflow store; $MLFLOW_TRACKING_URI wins")
    compile: Literal["auto", "on", "off"] = spec(
        "auto", doc="torch.compile the networks of the long trainings (fine-tuning, final networks): on, off, "
                    "or auto = on CUDA only (on a CPU compiling costs more than the short profiles' runs save)")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = spec(
        "default", doc="torch.compile mode; reduce-overhead replays the static-shape step as a CUDA graph")
    compile_backend: str = spec("inductor", doc="torch.compile backend (aot_eager: tracing without code "
                                                "generation, for debugging)")
    cuda_graphs: Literal["auto", "on", "off"] = spec(
        "off", doc="replay the first-order search step and the fine-tuning step as CUDA graphs: on, off, or "
                   "auto = on CUDA (not under torchrun, not for a network compiled with reduce-overhead)")
    variance: VarianceParams = spec(default_factory=VarianceParams)

    def validate(self, path: str) -> None:
        if self.cuda_graphs == "on" and self.compile == "on" and self.compile_mode == "reduce-overhead":
            raise ParamsError(f"{path}.cuda_graphs: 'on' with compile_mode 'reduce-overhead', which captures "
                              "CUDA graphs itself; use one of them (cuda_graphs: off, or compile_mode: default)")
        if self.compile_mode != "default" and self.compile_backend != "inductor":
            raise ParamsError(f"{path}.compile_mode: {self.compile_mode!r} is an inductor mode, but "
                              f"compile_backend is {self.compile_backend!r}; use compile_mode: default "
                              "or compile_backend: inductor")


def select_device(run: RunParams) -> torch.device:
    """cuda when asked or available under auto; a clear error when cuda is asked but absent."""
    if run.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if run.device == "cpu" or (run.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


# What each run.cpu_isa pins, by the environment variable each library reads when it first computes
# (ATen's kernel dispatch, oneDNN's JIT convolutions, MKL's GEMMs: Conditional Numerical Reproducibility).
CPU_ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}}


class CpuIsaError(RuntimeError):
    """run.cpu_isa cannot take effect in this process."""


def pin_cpu_isa(isa: str) -> None:
    """Pin the CPU kernels to `isa` before the process computes anything. Each library fixes its choice
    at its first computation, so a pin that comes too late cannot take effect: that is an error, not
    a silent difference in the numbers."""
    if isa == "native" or platform.machine().lower() not in ("x86_64", "amd64"):
        return
    os.environ.update(CPU_ISA_ENV[isa])
    got = torch.backends.cpu.get_cpu_capability()
    if got != isa.upper():
        raise CpuIsaError(
            f"run.cpu_isa is {isa!r} but torch's CPU kernels already run {got}: the pin must come before the "
            f"process's first tensor operation (or export {' '.join(f'{k}={v}' for k, v in CPU_ISA_ENV[isa].items())} "
            f"before starting it); on a CPU without {isa.upper()} set run.cpu_isa: native")


def setup(run: RunParams) -> torch.device:
    """Pin the CPU kernels, seed everything, apply the determinism mode, pick the device."""
    pin_cpu_isa(run.cpu_isa)
    random.seed(run.seed)
    np.random.seed(run.seed)
    torch.manual_seed(run.seed)
    if run.threads:
        torch.set_num_threads(run.threads)
    torch.backends.cudnn.benchmark = not run.deterministic
    torch.backends.cudnn.deterministic = run.deterministic
    if run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return select_device(run)


def autocast_dtype(run: RunParams, device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if run.amp and device.type == "cuda" else None


def use_channels_last(run: RunParams, device: torch.device) -> bool:
    return run.channels_last and device.type == "cuda"


def check_layout(model: torch.nn.Module, autocast_dtype: torch.dtype | None, channels_last: bool) -> None:
    """Refuse reduced-precision autocast with channels_last on a CPU model: there PyTorch's oneDNN
    backward computes wrong weight gradients for grouped dilated convolutions (DARTS's dil_conv_*,
    depthwise), silently (relative error ~1 and NaN with torch 2.15; dense and undilated convs are
    right). The stages never ask for it (amp and channels_last apply on CUDA only)."""
    device = next(model.parameters()).device
    if channels_last and autocast_dtype is not None and device.type == "cpu":
        raise ValueError(
            f"channels_last with {autocast_dtype} autocast on the CPU: PyTorch's oneDNN computes wrong weight "
            "gradients for grouped dilated convs (dil_conv_*) in that layout. Use channels_last on CUDA only "
            "(run.channels_last applies only there), or fp32 on the CPU.")


def compile_network(net: torch.nn.Module, run: RunParams, device: torch.device) -> bool:
    """torch.compile `net` in place when run.compile says so (True if it did). In place: the
    state_dict keeps its keys, so checkpoints and saved models do not depend on the switch. Under
    `auto` a graph that fails to compile runs eagerly (with a warning) instead of ending the run."""
    if run.compile == "off" or (run.compile == "auto" and device.type != "cuda"):
        return False
    if run.compile == "auto":
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
    net.compile(backend=run.compile_backend, mode=None if run.compile_mode == "default" else run.compile_mode)
    return True


def hardware() -> str:
    """A one-line description of where numbers were measured."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu}, {os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()} kernels (torch {torch.__version__})"


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group when launched by torchrun
    (gloo on CPU, nccl on GPU with one device per local rank)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
