"""The serving contract of a model: what clients send and receive, and how Triton batches it.

Both repository flavours (cpu and gpu) render from the same `ModelContract`, so a client
written against one works against the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.model_prep.manifest import ManifestError, ModelEntry, TensorSpec


@dataclass(frozen=True)
class BatchingPolicy:
    """Dynamic batching knobs shared by every flavour."""

    max_batch_size: int = 16
    preferred_batch_sizes: tuple[int, ...] = (4, 8, 16)
    max_queue_delay_us: int = 2000

    def __post_init__(self) -> None:
        if self.max_batch_size < 2:
            raise ValueError(
                f"max_batch_size must be at least 2 for batching, got {self.max_batch_size}"
            )
        if not self.preferred_batch_sizes or any(
            size < 1 or size > self.max_batch_size for size in self.preferred_batch_sizes
        ):
            raise ValueError(
                f"preferred batch sizes {self.preferred_batch_sizes} must lie in "
                f"1..{self.max_batch_size}"
            )
        if self.max_queue_delay_us < 0:
            raise ValueError("max_queue_delay_us must not be negative")


@dataclass(frozen=True)
class ModelContract:
    """Tensor names, dims, dtypes and batching of one Triton model."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    dynamic_batching: BatchingPolicy | None


def contract_for(
    entry: ModelEntry, policy: BatchingPolicy | None = None, *, served_as: str | None = None
) -> ModelContract:
    """The contract Triton serves for a manifest entry.

    A graph exported with a dynamic batch gets the batching policy. A graph with a static batch
    of 1 cannot be batched by any backend, so it is served with `max_batch_size: 0` (clients
    still send `[1, ...]` tensors); static batches above 1 are refused.
    """
    if not entry.served_by_triton:
        raise ManifestError(f"model '{entry.name}' ({entry.task}) is not served by Triton")
    name = served_as or entry.name
    if entry.batch is None:
        batching = policy or BatchingPolicy()
        return ModelContract(
            name=name,
            inputs=entry.inputs,
            outputs=entry.outputs,
            max_batch_size=batching.max_batch_size,
            dynamic_batching=batching,
        )
    if entry.batch == 1:
        return ModelContract(
            name=name,
            inputs=tuple(_with_batch_dim(t) for t in entry.inputs),
            outputs=tuple(_with_batch_dim(t) for t in entry.outputs),
            max_batch_size=0,
            dynamic_batching=None,
        )
    raise ManifestError(
        f"model '{entry.name}' has a static batch of {entry.batch}; export it with a dynamic "
        "batch (ultralytics `dynamic=True`) or batch 1 and run `cvstack models prepare` again"
    )


def _with_batch_dim(tensor: TensorSpec) -> TensorSpec:
    return TensorSpec(name=tensor.name, dtype=tensor.dtype, dims=(1, *tensor.dims))
