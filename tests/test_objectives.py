"""objectives/: exact and proxy tiers, VBench's rules, aggregation, registry, IO and CLI, on synthetic clips
whose truth is known in closed form."""

from __future__ import annotations

import csv
import json

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest

import objectives
from objectives import _rules
from objectives.score import main as score_main

SIDE = 128  # VBench threshold at 128 px: 6 * 128 / 256 = 3 px per kept pair


def texture(h: int, w: int, seed: int, tint=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Smooth random RGB texture in [40, 200] (no clipping when offset by small amounts)."""
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return np.clip((40 + 160 * smooth) * np.array(tint, np.float32), 0, 255).astype(np.uint8)


def moving_square(shifts: list[int], side: int = SIDE, square: int = 64) -> np.ndarray:
    """Frames with a textured square over a static textured background; ``shifts[t]`` is the square's
    horizontal displacement from frame t to t + 1, in whole pixels."""
    background, patch = texture(side, side, 1), texture(square, square, 2)
    xs = np.concatenate([[8], 8 + np.cumsum(shifts)]).astype(int)
    top = (side - square) // 2
    frames = np.repeat(background[None], len(xs), axis=0)
    for t, x in enumerate(xs):
        frames[t, top : top + square, x : x + square] = patch
    return frames


def static(t: int = 9) -> np.ndarray:
    return np.repeat(texture(SIDE, SIDE, 3)[None], t, axis=0)


# --- the static clip ----------------------------------------------------------------------------------

def test_static_clip_is_flicker_free_consistent_smooth_and_not_dynamic():
    result = objectives.evaluate([(static(), 8.0)], list(objectives.DIMENSIONS)).scores
    assert result["exact/temporal_flickering"] == 1.0
    assert result["proxy/subject_consistency"] == pytest.approx(1.0, abs=1e-9)
    assert result["proxy/background_consistency"] == pytest.approx(1.0, abs=1e-9)
    assert result["proxy/motion_smoothness"] == pytest.approx(1.0, abs=1e-3)
    assert result["proxy/dynamic_degree"] == 0.0
    assert result["proxy/dynamic_degree_magnitude"] < 0.1
    assert 0.0 <= result["proxy/aesthetic_quality"] <= 1.0 and 0.0 <= result["proxy/imaging_quality"] <= 1.0


# --- dynamic degree: VBench's rule --------------------------------------------------------------------

def test_vbench_dynamic_rule_constants_by_hand():
    assert [_rules.dynamic_interval(f) for f in (4, 8, 12, 16, 20, 24, 30)] == [1, 1, 2, 2, 2, 3, 4]
    assert _rules.dynamic_threshold(128, 200) == 3.0 and _rules.dynamic_threshold(480, 720) == 11.25
    # N = number of KEPT frames; Python rounds halves to even.
    assert [_rules.dynamic_count(n) for n in (1, 2, 6, 9, 10, 16, 49)] == [0, 0, 2, 2, 2, 4, 12]
    # VBench's loop: count 0 -> dynamic as soon as one pair exists; no pair -> static.
    assert _rules.is_dynamic([0.0], 3.0, 0) and not _rules.is_dynamic([], 3.0, 0)
    assert _rules.is_dynamic([4.0, 0.0, 3.5], 3.0, 2) and not _rules.is_dynamic([4.0, 3.0, 0.0], 3.0, 2)


def test_padding_and_top5_follow_raft_inputpadder():
    image = np.arange(101 * 100, dtype=np.float32).reshape(101, 100)
    padded = _rules.pad_to_multiple_of_8(image)
    assert padded.shape == (104, 104)  # 101 -> +3 (1 top, 2 bottom); 100 -> +4 (2 left, 2 right)
    np.testing.assert_array_equal(padded[1:102, 2:102], image)
    np.testing.assert_array_equal(padded[0, 2:102], image[0])
    np.testing.assert_array_equal(padded[-1, 2:102], image[-1])
    np.testing.assert_array_equal(padded[1:102, 0], image[:, 0])
    magnitude = np.zeros((20, 20))
    magnitude.flat[:20] = 7.0  # int(400 * 0.05) = 20 largest values
    magnitude.flat[20:25] = 1.0
    assert _rules.top5_mean(magnitude) == 7.0


@pytest.mark.parametrize("shift, dynamic", [(2, 0.0), (4, 1.0)])
def test_square_below_and_above_threshold(shift, dynamic):
    frames = moving_square([shift] * 8)  # 9 frames at 8 fps: every frame kept, count = round(36/16) = 2
    records = objectives.Scorer(["dynamic_degree"]).score_video(frames, 8.0)
    assert records["proxy/dynamic_degree"] == dynamic
    assert records["proxy/dynamic_degree_magnitude"] == pytest.approx(shift / 3.0, abs=0.1)


def test_fps_sampling_triples_per_pair_displacement():
    frames = moving_square([2] * 24)  # 25 frames, 2 px per frame
    # 8 fps keeps all 25 (count 6): 2 px < 3. 24 fps keeps every 3rd: 9 frames (count 2), 6 px > 3.
    assert objectives.dynamic_degree(frames, 8.0) == 0.0
    assert objectives.dynamic_degree(frames, 24.0) == 1.0
    magnitude = objectives.Scorer(["dynamic_degree"]).score_video(frames, 24.0)["proxy/dynamic_degree_magnitude"]
    assert magnitude == pytest.approx(6.0 / 3.0, abs=0.1)


@pytest.mark.parametrize("moving_pairs, dynamic", [(1, 0.0), (2, 1.0)])
def test_count_rule_flips_at_round_4n_over_16(moving_pairs, dynamic):
    # 9 kept frames -> count = 2 pairs above threshold; 5 px moves in the first pairs only.
    frames = moving_square([5] * moving_pairs + [0] * (8 - moving_pairs))
    assert objectives.dynamic_degree(frames, 8.0) == dynamic


def test_two_kept_frames_are_dynamic_by_vbench_rounding():
    assert objectives.dynamic_degree(static(2), 8.0) == 1.0  # count = round(0.5) = 0


# --- flicker and smoothness ---------------------------------------------------------------------------

def test_alternating_brightness_closed_form():
    base, k = texture(32, 48, 4), 12
    frames = np.stack([base + (k if t % 2 else 0) for t in range(9)]).astype(np.uint8)
    assert objectives.temporal_flickering(frames, 8.0) == pytest.approx((255 - k) / 255, abs=1e-7)
    # Even frames are identical, so any interpolator predicts them; the odd frames differ by k everywhere.
    flat = np.stack([np.full((32, 48, 3), 100 + (k if t % 2 else 0), np.uint8) for t in range(9)])
    assert objectives.motion_smoothness(flat, 8.0) == pytest.approx((255 - k) / 255, abs=1e-9)
    assert objectives.motion_smoothness(frames, 8.0) == pytest.approx((255 - k) / 255, abs=2e-3)


def test_flicker_matches_pairwise_mean_by_hand():
    frames = np.random.default_rng(5).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    pairs = [np.abs(frames[t].astype(int) - frames[t + 1].astype(int)).mean() for t in range(3)]
    assert objectives.temporal_flickering(frames, 30.0) == pytest.approx((255 - np.mean(pairs)) / 255, abs=1e-6)


def test_smooth_motion_beats_jitter():
    smooth = moving_square([2] * 8)
    jitter = moving_square([6, -6] * 4)  # odd frames jump off the line the even frames define
    assert objectives.motion_smoothness(smooth, 8.0) > objectives.motion_smoothness(jitter, 8.0) + 0.01
    assert objectives.motion_smoothness(smooth, 8.0) > 0.99


# --- consistency and the scene cut --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["subject_consistency", "background_consistency"])
def test_scene_cut_drops_consistency_with_first_frame_reference(name):
    a = texture(SIDE, SIDE, 10, tint=(1.2, 0.8, 0.5))
    b = np.ascontiguousarray(texture(SIDE, SIDE, 11, tint=(0.4, 0.8, 1.3)).transpose(1, 0, 2))
    cut = np.stack([a] * 4 + [b] * 4)
    c = getattr(objectives, name)(np.stack([a, b]), 8.0)  # similarity of the two scenes
    assert c < 0.5
    # t=1..3: 1; t=4: (c + c)/2; t=5..7: (1 + c)/2 (previous frame same scene, first frame not).
    expected = (3 + c + 3 * (1 + c) / 2) / 7
    assert getattr(objectives, name)(cut, 8.0) == pytest.approx(expected, abs=1e-9)
    assert getattr(objectives, name)(static(), 8.0) == pytest.approx(1.0)


def test_pair_weighted_aggregation_by_hand():
    a, b = texture(SIDE, SIDE, 10, tint=(1.2, 0.8, 0.5)), texture(SIDE, SIDE, 12, tint=(0.3, 0.9, 1.2))
    videos = [(static(5), 8.0), (np.stack([a, b]), 8.0)]
    ev = objectives.evaluate(videos, ["subject_consistency", "temporal_flickering"])
    c = ev.per_video[1]["proxy/subject_consistency"]
    assert ev.per_video[0]["proxy/subject_consistency/pairs"] == 4 and ev.per_video[1]["proxy/subject_consistency/pairs"] == 1
    assert ev.scores["proxy/subject_consistency"] == pytest.approx((4 * 1.0 + c) / 5, abs=1e-9)  # not (1 + c) / 2
    flicker = [objectives.temporal_flickering(f, 8.0) for f, _ in videos]
    assert ev.scores["exact/temporal_flickering"] == pytest.approx(np.mean(flicker))


def test_aggregate_hand_built_results():
    scorer = objectives.Scorer(["subject_consistency", "dynamic_degree"])
    results = [
        {"proxy/subject_consistency": 0.75, "proxy/subject_consistency/sum": 3.0, "proxy/subject_consistency/pairs": 4.0,
         "proxy/dynamic_degree": 1.0, "proxy/dynamic_degree_magnitude": 2.0},
        {"proxy/subject_consistency": 0.5, "proxy/subject_consistency/sum": 0.5, "proxy/subject_consistency/pairs": 1.0,
         "proxy/dynamic_degree": 0.0, "proxy/dynamic_degree_magnitude": 0.5},
        {"proxy/subject_consistency": 1.0, "proxy/subject_consistency/sum": 2.0, "proxy/subject_consistency/pairs": 2.0,
         "proxy/dynamic_degree": 0.0, "proxy/dynamic_degree_magnitude": 0.2},
    ]
    assert scorer.aggregate(results) == pytest.approx(
        {"proxy/subject_consistency": 5.5 / 7, "proxy/dynamic_degree": 1 / 3, "proxy/dynamic_degree_magnitude": 0.9}
    )
    with pytest.raises(ValueError, match="video result 1 lacks record 'proxy/dynamic_degree'"):
        scorer.aggregate([results[0], {k: v for k, v in results[1].items() if k != "proxy/dynamic_degree"}])


# --- quality proxies: direction on synthetic distortions ----------------------------------------------

def test_quality_proxies_fall_with_blur_noise_and_greyness():
    sharp = np.stack([texture(SIDE, SIDE, 20 + t) for t in range(3)])
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 3.0) for f in sharp])
    noise = np.random.default_rng(0).normal(0, 15, sharp.shape)
    noisy = np.clip(sharp + noise, 0, 255).astype(np.uint8)
    grey = np.repeat(cv2.cvtColor(sharp[0], cv2.COLOR_RGB2GRAY)[None, ..., None], 3, axis=-1).repeat(3, axis=0)
    iq = {name: objectives.imaging_quality(v, 8.0) for name, v in [("sharp", sharp), ("blur", blurred), ("noise", noisy)]}
    assert iq["sharp"] > iq["blur"] and iq["sharp"] > iq["noise"]
    assert objectives.aesthetic_quality(sharp, 8.0) > objectives.aesthetic_quality(grey, 8.0)
    assert objectives.aesthetic_quality(sharp, 8.0) > objectives.aesthetic_quality(np.full_like(sharp, 3), 8.0)


# --- registry -----------------------------------------------------------------------------------------

def test_registry_names_tiers_and_directions():
    assert objectives.record_name("temporal_flickering", "vbench") == "exact/temporal_flickering"
    assert objectives.record_name("subject_consistency") == "proxy/subject_consistency"
    assert objectives.record_name("subject_consistency", "vbench") == "vbench/subject_consistency"
    assert objectives.record_names("dynamic_degree") == ["proxy/dynamic_degree", "proxy/dynamic_degree_magnitude"]
    assert all(objectives.available(name, "vbench") for name in objectives.DIMENSIONS)
    assert {objectives.direction(n) for n in objectives.DIMENSIONS} == {"maximize"}
    assert objectives.direction("proxy/dynamic_degree_magnitude") == "maximize"
    assert objectives.resolve(["dynamic_degree", "subject_consistency"], {"subject_consistency": "vbench"}) == {
        "dynamic_degree": "proxy", "subject_consistency": "vbench"}
    assert objectives.record_name("dynamic_degree", "vbench") == "vbench/dynamic_degree"
    with pytest.raises(objectives.MissingWeightsError, match="motion_smoothness.*/nonexistent/amt_model/amt-s.pth"):
        objectives.Scorer(["motion_smoothness"], backend="vbench", weights_dir="/nonexistent")


# --- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "frames, fps, error, match",
    [
        (np.zeros((3, 8, 8, 3), np.float32), 8, ValueError, "dtype uint8, got float32"),
        (np.zeros((3, 8, 8), np.uint8), 8, ValueError, r"shape \[T, H, W, 3\], got \(3, 8, 8\)"),
        (np.zeros((1, 8, 8, 3), np.uint8), 8, ValueError, "at least 2 frames, got 1"),
        ([[1, 2]], 8, TypeError, "got list"),
        ("video.mp4", 8, TypeError, "got str"),
        (np.zeros((3, 8, 8, 3), np.uint8), 0, ValueError, "fps must be a finite positive number, got 0"),
        (np.zeros((3, 8, 8, 3), np.uint8), float("nan"), ValueError, "got nan"),
    ],
)
def test_bad_frames_and_fps(frames, fps, error, match):
    with pytest.raises(error, match=match):
        objectives.temporal_flickering(frames, fps)


def test_bad_names_and_frame_counts():
    with pytest.raises(ValueError, match="unknown dimension 'flicker'"):
        objectives.Scorer(["flicker"])
    with pytest.raises(ValueError, match="unknown backend 'exactish'"):
        objectives.Scorer(["temporal_flickering"], backend="exactish")
    with pytest.raises(ValueError, match="at least 3 frames, got 2"):
        objectives.motion_smoothness(static(2), 8.0)
    with pytest.raises(ValueError, match="listed twice"):
        objectives.resolve(["dynamic_degree", "dynamic_degree"])
    with pytest.raises(ValueError, match="video 1: frames must have dtype uint8"):
        objectives.evaluate([(static(3), 8), (static(3).astype(np.int16), 8)], "temporal_flickering")


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="cannot read video '.*broken.mp4'"):
        objectives.read_video(bad)
    with pytest.raises(FileNotFoundError, match="nothere.mp4"):
        objectives.read_video(tmp_path / "nothere.mp4")
    assert score_main([str(bad), "--out", str(tmp_path / "t.csv")]) == 2


# --- files and the CLI --------------------------------------------------------------------------------

def test_cli_writes_csv_and_json_with_real_fps(tmp_path, capsys):
    base = texture(32, 48, 7)
    frames = np.stack([np.clip(base.astype(int) + (20 if t % 2 else 0), 0, 255) for t in range(6)]).astype(np.uint8)
    imageio.mimwrite(tmp_path / "clip.mp4", frames, fps=12, macro_block_size=1)
    imageio.mimwrite(tmp_path / "clip.gif", frames, duration=250, loop=0)  # 250 ms per frame -> 4 fps

    # Independent decode as VBench does it (OpenCV, float32 absdiff) for the expected flicker.
    capture, decoded = cv2.VideoCapture(str(tmp_path / "clip.mp4")), []
    while (ok_frame := capture.read())[0]:
        decoded.append(ok_frame[1].astype(np.float32))
    expected = (255 - np.mean([np.abs(x - y).mean() for x, y in zip(decoded[:-1], decoded[1:])])) / 255

    out = tmp_path / "out" / "table.csv"
    assert score_main([str(tmp_path), "--dimensions", "temporal_flickering", "dynamic_degree", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["video"].rsplit("/", 1)[-1] for r in rows] == ["clip.gif", "clip.mp4", "ALL"]
    gif, mp4 = rows[0], rows[1]
    assert float(mp4["fps"]) == 12.0 and int(mp4["frames"]) == 6 and float(gif["fps"]) == 4.0
    assert float(mp4["exact/temporal_flickering"]) == pytest.approx(expected, abs=1e-3)
    assert float(gif["exact/temporal_flickering"]) == pytest.approx((255 - 20) / 255, abs=1e-3)  # gif is lossless here
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["tiers"] == {"temporal_flickering": "exact", "dynamic_degree": "proxy"}
    assert report["scores"]["exact/temporal_flickering"] == pytest.approx(
        (float(gif["exact/temporal_flickering"]) + float(mp4["exact/temporal_flickering"])) / 2, abs=1e-4)
    assert "exact/temporal_flickering" in capsys.readouterr().out
