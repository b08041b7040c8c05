"""Regional compilation (`compile_repeated_blocks`) of `UNetSpatioTemporalModel`.

The test compiles with `backend="eager"`: TorchDynamo captures each block as one graph (`fullgraph=True` fails on
any graph break) without inductor's C++ code generation, which takes minutes per block on a CPU (see
`benchmarks/benchmark_compile.py` for inductor).
"""

import pytest
import torch

from ..testing_utils import build_unet


def test_repeated_blocks_name_the_blocks_of_the_model():
    unet = build_unet(identity_init=False)
    present = {module.__class__.__name__ for module in unet.modules()}
    assert unet._repeated_blocks
    assert set(unet._repeated_blocks) <= present


@pytest.mark.usefixtures("no_grad")
def test_compile_repeated_blocks_fullgraph_matches_eager():
    torch._dynamo.reset()
    unet = build_unet(identity_init=False)
    sample, text = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 5, 16)
    references = {timestep: unet(sample, timestep, text).sample for timestep in (10, 500)}

    unet.compile_repeated_blocks(fullgraph=True, backend="eager")
    compiled = [module for module in unet.modules() if module.__class__.__name__ in unet._repeated_blocks]
    assert len(compiled) == len(unet.down_blocks) + 1 + len(unet.up_blocks)
    assert all(module._compiled_call_impl is not None for module in compiled)
    for timestep, reference in references.items():
        assert (unet(sample, timestep, text).sample - reference).abs().max().item() <= 1e-4
    torch._dynamo.reset()
