import pytest
import torch

from models.manifest import CheckpointError, check_state_dict, load_manifest, strip_prefix


def test_manifests_have_expected_counts():
    assert len(load_manifest("dit")) == 825
    assert len(load_manifest("vae")) == 194
    assert len(load_manifest("umt5")) == 242


def test_check_names_first_problem():
    expected = {"a.weight": (2, 3), "b.bias": (4,)}
    ok = {"a.weight": torch.zeros(2, 3), "b.bias": torch.zeros(4)}
    check_state_dict(ok, expected)
    with pytest.raises(CheckpointError, match="missing, first: 'b.bias'"):
        check_state_dict({"a.weight": torch.zeros(2, 3)}, expected, source="x.pth")
    with pytest.raises(CheckpointError, match="unexpected key.*'c'"):
        check_state_dict({**ok, "c": torch.zeros(1)}, expected)
    with pytest.raises(CheckpointError, match=r"'a.weight' has shape \[3, 2\]"):
        check_state_dict({**ok, "a.weight": torch.zeros(3, 2)}, expected)


def test_strip_prefix():
    assert set(strip_prefix({"model.x": 1, "y": 2}, "model.")) == {"x", "y"}
