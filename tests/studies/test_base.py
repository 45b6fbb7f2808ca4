import math
from dataclasses import dataclass, field

import pytest

from bottlenecks.studies import StudyConfig, StudyResults
from bottlenecks.studies.base import nan_equal


@dataclass
class ToyConfig(StudyConfig):
    num_codebooks: int = 64
    methods: tuple = ("dkvb", "linear")
    seed: int = 0

    def validate(self):
        if self.num_codebooks < 1:
            raise ValueError(f"num_codebooks: expected >= 1, got {self.num_codebooks}")


@dataclass
class ToyResults(StudyResults):
    accuracy: dict = field(default_factory=dict)
    curve: list = field(default_factory=list)


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ValueError, match=r"'num_codebok' \(did you mean 'num_codebooks'\?\)"):
        ToyConfig.from_dict({"num_codebok": 8})


def test_validate_runs_on_construction_and_replace():
    with pytest.raises(ValueError, match="num_codebooks"):
        ToyConfig(num_codebooks=0)
    cfg = ToyConfig()
    with pytest.raises(ValueError, match="num_codebooks"):
        cfg.replace(num_codebooks=-1)
    with pytest.raises(ValueError, match="unknown key"):
        cfg.replace(seeds=3)


def test_config_round_trip_turns_lists_into_tuples():
    cfg = ToyConfig(num_codebooks=8, methods=("dkvb",), seed=3)
    back = ToyConfig.from_dict(cfg.to_dict())
    assert back == cfg and isinstance(back.methods, tuple)


def test_results_json_round_trip_keeps_nan(tmp_path):
    res = ToyResults(accuracy={"dkvb": 0.9, "linear": float("nan")}, curve=[[0, 0.1], [50, 0.5]])
    back = ToyResults.from_json(res.to_json(tmp_path / "r.json"))
    assert math.isnan(back.accuracy["linear"]) and nan_equal(back.to_dict(), res.to_dict())
    assert nan_equal(ToyResults.from_json(tmp_path / "r.json").to_dict(), res.to_dict())
    assert not nan_equal({"a": 1.0}, {"a": 2.0})


def test_corrupt_json_names_the_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        ToyResults.from_json(p)
