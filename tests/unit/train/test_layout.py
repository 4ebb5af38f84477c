"""bf16 + channels_last on the CPU is refused before any step: PyTorch's oneDNN computes wrong weight
gradients for grouped dilated convs in that layout (see nascore.runtime.check_layout)."""
import pytest
import torch

from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet
from nascore.train.tasks import SupervisedTask


def _search(autocast_dtype, channels_last):
    model = DartsSupernet(C=4, num_classes=3, layers=3)
    return DifferentiableSearch(model, lr=0.05, lr_min=0.05, momentum=0.9, weight_decay=0.0, grad_clip=5.0,
                                epochs=1, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=0.0,
                                autocast_dtype=autocast_dtype, channels_last=channels_last)


def _task(autocast_dtype, channels_last):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, dilation=2, groups=1), torch.nn.Flatten())
    opt = torch.optim.SGD(model.parameters(), 0.1)
    return SupervisedTask(model, opt, None, epochs=1, aux_weight=0.0, grad_clip=5.0, drop_path_prob=0.0,
                          autocast_dtype=autocast_dtype, channels_last=channels_last)


@pytest.mark.parametrize("build", [_search, _task])
def test_cpu_bf16_channels_last_is_refused_with_the_way_out(build):
    with pytest.raises(ValueError, match="channels_last with torch.bfloat16 autocast on the CPU.*CUDA only"):
        build(torch.bfloat16, True)


@pytest.mark.parametrize("build", [_search, _task])
@pytest.mark.parametrize("dtype,cl", [(None, True), (torch.bfloat16, False), (None, False)])
def test_other_cpu_layouts_are_accepted(build, dtype, cl):
    assert build(dtype, cl).channels_last is cl
