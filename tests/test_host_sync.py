"""Our encoder and loss never read a tensor value on the host: on a GPU such a read waits for every
queued kernel (a host sync) and stalls the step. On the CPU the same reads are visible as the aten
ops that produce a Python value or a data-dependent shape, which this test records."""

from typing import List

import torch
from helpers.models import tiny_encoder
from torch.utils._python_dispatch import TorchDispatchMode

from espnet_ils.model.loss import ILSLoss
from espnet_ils.model.preencoder import FeatureProjection

aten = torch.ops.aten
# Ops whose result needs the tensor's values on the host: item()/bool()/int()/tolist() all end
# in _local_scalar_dense; the others size their output by the data.
HOST_READS = {
    aten._local_scalar_dense.default,
    aten.nonzero.default,
    aten.masked_select.default,
    aten.is_nonzero.default,
    aten.equal.default,
    aten.repeat_interleave.Tensor,
    aten._unique2.default,
}


class HostReadRecorder(TorchDispatchMode):
    """Records every op that reads tensor values on the host, boolean indexing included."""

    def __init__(self):
        super().__init__()
        self.reads: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        bool_index = func is aten.index.Tensor and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
        )
        if func in HOST_READS or bool_index:
            self.reads.append(str(func))
        return func(*args, **(kwargs or {}))


def test_the_recorder_sees_the_reads_it_looks_for():
    x = torch.randn(4)
    with HostReadRecorder() as recorder:
        x.sum().item()
        bool((x > 0).any())
        _ = x[x > 0]
    assert len(recorder.reads) == 3


def test_projection_encoder_and_loss_forward_backward_read_nothing_on_the_host():
    projection = FeatureProjection(16, 32, dropout_rate=0.1).train()
    encoder = tiny_encoder(layer_drop_rate=0.5, dropout_rate=0.1, attention_dropout_rate=0.1)
    loss = ILSLoss(32, 7, layers=[2, 4], final_dim=8, unmasked_weight=0.5).train()
    features = torch.randn(2, 30, 16, requires_grad=True)
    lengths = torch.tensor([30, 21])
    text = torch.randint(0, 7, (2, 30))
    text[1, 21:] = -1
    mask_m = torch.rand(2, 30) < 0.5
    with HostReadRecorder() as recorder:
        projected, _ = projection(features, lengths)
        (_, hidden), olens, _ = encoder(projected, lengths, return_all_hs=True)
        total, stats = loss(hidden, olens, text, lengths, {"mask_m": mask_m}, features, lengths)
        total.backward()
    assert recorder.reads == []
    assert features.grad is not None and torch.isfinite(total)
