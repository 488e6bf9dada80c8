"""The pipeline on real live-swap footage from ../shared/data (read in place, never copied)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swapwatch.cli.main import main

pytestmark = pytest.mark.data

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PAIR_CLIP = DATA / "dfl" / "Ava_de_Addario" / "Ava_de_Addario_0.mp4"


@pytest.mark.skipif(not PAIR_CLIP.is_file(), reason="../shared/data is not present")
def test_side_by_side_live_swap_clip_is_tracked_and_scored(
    capsys: pytest.CaptureFixture[str], real_model: Path
) -> None:
    assert main(["scan", str(PAIR_CLIP), "--json", "--model", str(real_model)]) == 0
    result = json.loads(capsys.readouterr().out)
    # Two people on each half of the frame: four faces, each followed under one id throughout.
    main_tracks = [t for t in result["tracks"] if t["main"]]
    assert len(main_tracks) == 4
    analysed = result["frames"]["analysed"]
    assert all(t["frames_seen"] >= 0.9 * analysed for t in main_tracks)
    assert all(t["frames_scored"] >= 0.7 * analysed for t in main_tracks)
    assert result["frames"]["decoded"] == 268 and result["frames"]["decode_errors"] == 0
