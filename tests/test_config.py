"""The shared helpers: environment switches and plain configs."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from brain_go_brr.config import env_flag, plain, plain_dict


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("0", False), ("off", False), (" FALSE ", False), ("no", False),
     ("1", True), ("on", True), ("yes", True), ("anything", True)],
)  # fmt: skip
def test_env_flag_reads_on_and_off(
    value: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("BGB_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("BGB_TEST_SWITCH", value)
    assert env_flag("BGB_TEST_SWITCH") is expected
    if value is None:
        assert env_flag("BGB_TEST_SWITCH", default=False) is False


def test_plain_resolves_omegaconf_and_leaves_the_rest() -> None:
    cfg = OmegaConf.create({"a": 1, "b": "${a}", "c": [1, {"d": "${a}"}]})
    out = plain(cfg)
    assert out == {"a": 1, "b": 1, "c": [1, {"d": 1}]} and isinstance(out, dict)
    assert plain(cfg.c) == [1, {"d": 1}]
    assert plain({"x": 1}) == {"x": 1} and plain(3) == 3
    assert plain_dict(cfg) == {"a": 1, "b": 1, "c": [1, {"d": 1}]}
    with pytest.raises(TypeError, match="mapping"):
        plain_dict(OmegaConf.create([1, 2]))  # type: ignore[arg-type]
