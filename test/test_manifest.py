import json

import pytest
import torch

from models.manifest import CheckpointError, check_state_dict, load_manifest, read_state_dict, strip_prefix


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


def test_read_state_dict_formats_and_errors(tmp_path):
    from safetensors.torch import save_file

    sd = {"a": torch.arange(3.0)}
    torch.save(sd, tmp_path / "x.pth")
    save_file(sd, tmp_path / "x.safetensors")
    for name in ("x.pth", "x.safetensors"):
        assert torch.equal(read_state_dict(tmp_path / name, "test file", "fix")["a"], sd["a"])
    with pytest.raises(CheckpointError, match="y.pth: test file not found \\(get it here\\)"):
        read_state_dict(tmp_path / "y.pth", "test file", "get it here")
    (tmp_path / "bad.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth: cannot read the test file"):
        read_state_dict(tmp_path / "bad.pth", "test file", "fix")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        read_state_dict(tmp_path / "list.pth", "test file", "fix")


@pytest.mark.parametrize("name", ["dit", "vae", "umt5"])
def test_manifests_equal_the_reference_listings(name, shared_dir):
    """The bundled manifests equal the published checkpoints' key/shape listings in ../shared/reference/keys."""
    from models.manifest import MANIFESTS

    listing = (shared_dir / "reference" / "keys" / MANIFESTS[name]).read_text()
    reference = {k: tuple(json.loads(s)) for k, s in (line.split("\t") for line in listing.splitlines() if line.strip())}
    assert load_manifest(name) == reference
