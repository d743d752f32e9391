"""Both repository flavours render the same client contract, checked with Triton's own protobuf."""

from __future__ import annotations

from dataclasses import replace

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from backend.model_prep.manifest import Manifest, ManifestError, ModelEntry
from backend.triton_server.contract import BatchingPolicy, contract_for
from backend.triton_server.repository import RenderOptions, render_config

CONTRACT_FIELDS = ("name", "max_batch_size", "input", "output", "dynamic_batching")


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def contract_of(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {field: str(getattr(config, field)) for field in CONTRACT_FIELDS}


@pytest.mark.parametrize("name", ["yolo", "yolo_pose"])
def test_cpu_and_gpu_flavours_declare_the_same_contract(manifest: Manifest, name: str) -> None:
    contract = contract_for(manifest.entry(name))
    cpu = parse(render_config(contract, "cpu", RenderOptions(cpu_threads=2)))
    gpu = parse(render_config(contract, "gpu", RenderOptions(instances=2)))

    assert contract_of(cpu) == contract_of(gpu)
    assert cpu.backend == "python" and not cpu.platform
    assert gpu.platform == "tensorrt_plan" and gpu.default_model_filename == "model.plan"
    assert [g.kind for g in cpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert [g.kind for g in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    assert gpu.instance_group[0].count == 2
    assert cpu.parameters["intra_op_threads"].string_value == "2"


@pytest.mark.parametrize("name", ["yolo", "yolo_pose"])
def test_contract_batches_and_matches_the_manifest(manifest: Manifest, name: str) -> None:
    entry = manifest.entry(name)
    config = parse(render_config(contract_for(entry), "gpu"))

    assert config.max_batch_size == 16
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(t.name, list(t.dims)) for t in config.input] == [("images", [3, 320, 320])]
    channels = 84 if name == "yolo" else 56
    assert [(t.name, list(t.dims)) for t in config.output] == [("output0", [channels, 2100])]
    assert config.input[0].data_type == model_config_pb2.TYPE_UINT8


def test_static_batch_one_is_served_unbatched_with_the_batch_in_the_dims(
    manifest: Manifest,
) -> None:
    entry: ModelEntry = replace(manifest.entry("yolo"), batch=1)
    contract = contract_for(entry)
    cpu = parse(render_config(contract, "cpu"))
    gpu = parse(render_config(contract, "gpu"))

    assert contract_of(cpu) == contract_of(gpu)
    assert cpu.max_batch_size == 0
    assert list(cpu.input[0].dims) == [1, 3, 320, 320]
    assert not cpu.HasField("dynamic_batching")


def test_static_batch_above_one_is_refused_with_the_way_out(manifest: Manifest) -> None:
    with pytest.raises(ManifestError, match=r"static batch of 4.*dynamic=True"):
        contract_for(replace(manifest.entry("yolo"), batch=4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 1}, "at least 2"),
        ({"preferred_batch_sizes": (4, 32)}, "must lie in 1..16"),
        ({"preferred_batch_sizes": ()}, "must lie in"),
        ({"max_queue_delay_us": -1}, "must not be negative"),
    ],
)
def test_batching_policy_rejects_values_that_would_disable_or_break_batching(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BatchingPolicy(**kwargs)  # type: ignore[arg-type]


def test_unknown_flavour_is_rejected(manifest: Manifest) -> None:
    with pytest.raises(ValueError, match="unknown flavour 'tpu'"):
        render_config(contract_for(manifest.entry("yolo")), "tpu")  # type: ignore[arg-type]
