"""A torch model as one flat float32 buffer plus its manifest, and back.

This is how a model crosses the wire and goes into a checkpoint (DESIGN.md: never
``torch.save``/``torch.load`` of bytes from a peer). :func:`flatten` copies the model's state into
one contiguous little-endian float32 vector and describes it with a
:class:`~sealfl.models.manifest.FlatManifest`; :func:`load_flat` checks a buffer against the
model's own manifest (names, order, shapes, dtypes, length, finiteness) before it writes a single
value, so a refused buffer leaves the model exactly as it was.

What the buffer holds: every floating-point entry of ``model.state_dict()`` in state-dict order,
i.e. the parameters and, with ``buffers=True`` (the default), the batch-norm running means and
variances, which FedAvg averages like weights. Integer buffers (batch norm's
``num_batches_tracked``) are left out: they only count steps, cannot be averaged and are not used
by the forward pass at a fixed momentum. All floating entries must be float32; a model cast to
another dtype is refused rather than silently rounded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from sealfl.errors import ConfigError, ProtocolError
from sealfl.models.manifest import FLAT_DTYPE, FlatManifest, TensorSpec

__all__ = ["flatten", "load_flat", "manifest_of"]


def _entries(model: nn.Module, *, buffers: bool) -> list[tuple[str, torch.Tensor]]:
    params = {name for name, _ in model.named_parameters()}
    out = []
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        if not buffers and name not in params:
            continue
        if tensor.dtype != torch.float32:
            raise ConfigError(
                f"flat buffers carry float32 tensors; {name!r} is {tensor.dtype} "
                "(cast the model with .float())"
            )
        out.append((name, tensor))
    return out


def manifest_of(model: nn.Module, *, buffers: bool = True) -> FlatManifest:
    """Return the manifest of ``model``'s flat buffer without copying any values.

    Parameters
    ----------
    model
        The network.
    buffers
        Include floating-point buffers (batch-norm running statistics), not only parameters.
    """
    return FlatManifest(
        tuple(
            TensorSpec(name=name, shape=tuple(int(n) for n in t.shape), dtype="float32")
            for name, t in _entries(model, buffers=buffers)
        )
    )


def flatten(
    model: nn.Module, *, buffers: bool = True
) -> tuple[npt.NDArray[np.float32], FlatManifest]:
    """Copy ``model``'s state into one flat float32 vector.

    Parameters
    ----------
    model
        The network (on the CPU or not: values are copied to host memory).
    buffers
        As in :func:`manifest_of`.

    Returns
    -------
    tuple
        ``(values, manifest)``: a 1-D little-endian float32 array that owns its memory
        (``values.tobytes()`` is the wire form), and the manifest describing it.
    """
    entries = _entries(model, buffers=buffers)
    manifest = FlatManifest(
        tuple(
            TensorSpec(name=name, shape=tuple(int(n) for n in t.shape), dtype="float32")
            for name, t in entries
        )
    )
    values = np.empty(manifest.numel, dtype=FLAT_DTYPE)
    out = torch.from_numpy(values) if FLAT_DTYPE.isnative else None
    with torch.no_grad():
        for (_, tensor), (_, start, stop) in zip(entries, manifest.slices(), strict=True):
            flat = tensor.detach().reshape(-1)
            if out is not None:
                out[start:stop].copy_(flat)
            else:  # a big-endian host: let numpy swap the bytes
                values[start:stop] = flat.cpu().numpy()
    return values, manifest


def load_flat(
    model: nn.Module,
    buffer: bytes | bytearray | memoryview | npt.NDArray[np.generic],
    manifest: FlatManifest,
    *,
    buffers: bool = True,
) -> None:
    """Overwrite ``model``'s state with the values of a flat buffer, after checking everything.

    Parameters
    ----------
    model
        The network to load into; its own manifest (with the same ``buffers`` choice) is what
        ``manifest`` must equal.
    buffer
        Little-endian float32 bytes, or a 1-D float32 array.
    manifest
        The manifest the sender says describes ``buffer``.
    buffers
        As in :func:`manifest_of`.

    Raises
    ------
    ProtocolError
        If ``manifest`` differs from the model's (a tensor missing, extra, reordered, or of
        another shape or dtype: the message names it, expected vs got), the buffer's length or
        dtype does not fit, or any value is NaN or infinite. Nothing is written in that case.
    """
    expected = manifest_of(model, buffers=buffers)
    difference = expected.difference(manifest)
    if difference is not None:
        raise ProtocolError(f"flat buffer: manifest does not match the model: {difference}")
    values = manifest.check_buffer(buffer)
    if not values.dtype.isnative or not values.flags.writeable:
        # torch.from_numpy wants native byte order and warns on read-only memory (bytes).
        values = values.astype(np.float32, copy=True)
    source = torch.from_numpy(values)
    state = model.state_dict()
    with torch.no_grad():
        for spec, start, stop in manifest.slices():
            target = state[spec.name]
            target.copy_(source[start:stop].view(spec.shape))
