"""``vboost.export`` and presets, checked against a study built here directly with Optuna.

The study mimics what ``python -m vboost.sweep`` leaves in ``outputs/<study>/``; the expected Pareto set,
values and parameters come from the numbers written here, not from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import optuna
import pytest

from vboost.export import export_study, mask_url
from vboost.export.__main__ import main as export_main
from vboost.methods.enhance_a_video import EnhanceAVideo
from vboost.methods.preset import ObjectiveValue, Preset

SECRET = "s3cretPW"
STORAGE_WITH_PASSWORD = f"postgresql://vboost:{SECRET}@db.example.org:5432/sweeps"
PROMPTS = ["a cat runs on the beach", "a red car at night"]
SEEDS = [0, 1]
OBJECTIVES = [("proxy/temporal_flickering", "maximize"), ("proxy/dynamic_degree", "maximize")]
NUM_FRAMES, STEPS, HEIGHT, WIDTH = 9, 2, 32, 48
LATENT_FRAMES = (NUM_FRAMES - 1) // 4 + 1
# trial number -> (role, weight, aggregated objective values, frames per clip)
TRIALS = {
    0: ("baseline", None, (0.90, 0.30), 5),
    1: ("paper", 3.4, (0.91, 0.33), 5),
    2: ("search", 1.0, (0.905, 0.31), 5),
    3: ("search", 6.0, (0.95, 0.20), 5),
    4: ("search", 2.0, (0.89, 0.28), 5),
    5: ("search", 4.0, (0.94, 0.40), 6),  # longer clips: the side-by-side must pad the others
    6: ("search", 0.5, (0.92, 0.35), 5),
    7: ("search", 8.0, (0.80, 0.45), 5),
}
WITH_VIDEO_FILES = (0, 1, 5)  # baseline, paper default and the best setting


def pareto_numbers() -> set[int]:
    """Trials no other trial (the baseline included) beats on both objectives, by brute force; baseline left out."""
    values = {n: v for n, (_, _, v, _) in TRIALS.items()}
    front = {
        n for n, v in values.items()
        if not any(all(o >= s for o, s in zip(other, v)) and other != v for m, other in values.items() if m != n)
    }
    return front - {0}


def clip(trial: int, prompt_index: int, seed: int, num_frames: int) -> np.ndarray:
    """A smooth synthetic clip (smooth so that H.264 keeps it close), different per trial, prompt and seed."""
    t, y, x, c = np.meshgrid(np.arange(num_frames), np.arange(HEIGHT), np.arange(WIDTH), np.arange(3), indexing="ij")
    value = 30 + 12 * t + 2 * x + 1.5 * y + 25 * c + 9 * trial + 20 * prompt_index + 7 * seed
    return np.clip(value, 0, 255).astype(np.uint8)


def per_video_scores(trial: int) -> dict[tuple[str, int], dict[str, float]]:
    """Per-clip scores scattered around the trial's aggregate (a fixed generator per trial)."""
    rng = np.random.default_rng(100 + trial)
    values = TRIALS[trial][2]
    return {
        (prompt, seed): {name: float(values[i] + rng.normal(0, 0.02)) for i, (name, _) in enumerate(OBJECTIVES)}
        for prompt in PROMPTS for seed in SEEDS
    }


def build_sweep_dir(root: Path, name: str = "tiny_cogvideox-enhance_a_video-proxy", objectives=OBJECTIVES, backbone="cogvideox") -> Path:
    """``<root>/<name>/`` as ``python -m vboost.sweep`` leaves it: ``study.db`` (with the run context as study user
    attrs) and ``videos/``."""
    study_dir = root / name
    study_dir.mkdir(parents=True)
    study = optuna.create_study(
        study_name=name, storage=f"sqlite:///{study_dir / 'study.db'}", directions=[d for _, d in objectives]
    )
    context = {
        "targets": [n for n, _ in objectives], "method": "enhance_a_video", "backbone": backbone,
        "checkpoint": "/models/CogVideoX-2b", "num_frames": NUM_FRAMES, "steps": STEPS, "fps": 8,
        "prompts": PROMPTS, "seeds": SEEDS,
        "storage": STORAGE_WITH_PASSWORD,  # no sweep stores it; a password anywhere in attrs must still be masked
    }
    for key, value in context.items():
        study.set_user_attr(key, value)
    for number, (role, weight, values, frames) in TRIALS.items():
        video_scores = {}
        for p in range(len(PROMPTS)):
            for seed in SEEDS:
                key = f"p{p}_s{seed}"
                if number in WITH_VIDEO_FILES:
                    path = study_dir / "videos" / f"trial_{number:04d}" / f"{key}.mp4"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    imageio.mimwrite(path, list(clip(number, p, seed, frames)), fps=8, codec="libx264",
                                     macro_block_size=1, ffmpeg_params=["-crf", "0"])
                video_scores[key] = per_video_scores(number)[(PROMPTS[p], seed)]
        scores = {n: values[i] for i, (n, _) in enumerate(objectives)}
        attrs = {"role": role, "scores": scores, "video_scores": video_scores, "fail_note": f"retried on {STORAGE_WITH_PASSWORD}"}
        params, dists = {}, {}
        if weight is not None:
            # The search space is weight / F (per latent frame); the method's kwargs are in the knobs attr.
            params = {"weight": weight / LATENT_FRAMES}
            dists = {"weight": optuna.distributions.FloatDistribution(0.02, 3.0, log=True)}
            attrs["knobs"] = {"weight": weight, "start": 0.0, "end": 1.0, "layers": None}
        study.add_trial(optuna.trial.create_trial(
            values=list(values[: len(objectives)]), params=params, distributions=dists, user_attrs=attrs
        ))
    return study_dir


def all_written_text(directory: Path) -> str:
    return "\n".join(p.read_bytes().decode("latin-1") for p in directory.rglob("*") if p.is_file() and p.suffix != ".db")


# --- presets ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_preset_round_trip_builds_an_equal_method(tmp_path, suffix):
    method = EnhanceAVideo(weight=2.5, start=0.1, end=0.9, layers=["transformer_blocks.1", 0])
    preset = Preset.from_method(
        method, backbone="cogvideox", num_frames=49, steps=50, study="s", trial=3,
        objectives=[ObjectiveValue("proxy/temporal_flickering", "maximize", 0.95, 0.9)],
    )
    path = tmp_path / f"preset{suffix}"
    (preset.to_yaml if suffix == ".yaml" else preset.to_json)(path)
    loaded = Preset.load(path)
    assert loaded == preset
    rebuilt = loaded.build()
    assert type(rebuilt) is EnhanceAVideo and rebuilt == method


def test_preset_errors_name_the_bad_value(tmp_path):
    with pytest.raises(KeyError, match="no_such_method"):
        Preset("no_such_method", {"weight": 1.0}).build()
    with pytest.raises(ValueError, match="strength"):
        Preset("enhance_a_video", {"weight": 1.0, "strength": 2}).build()
    with pytest.raises(ValueError, match="weight"):
        Preset("enhance_a_video", {"start": 0.1}).build()
    with pytest.raises(ValueError, match="start"):
        Preset("enhance_a_video", {"weight": 1.0, "start": 0.9, "end": 0.1}).build()
    with pytest.raises(ValueError, match="colour"):
        Preset.from_dict({"method": "enhance_a_video", "params": {}, "colour": "red"})
    with pytest.raises(ValueError, match="sideways"):
        ObjectiveValue("x", "sideways", 1.0)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        Preset.load(tmp_path / "missing.yaml")


# --- export ----------------------------------------------------------------------------------------------

def test_export_writes_every_pareto_member_with_loadable_presets(tmp_path):
    study_dir = build_sweep_dir(tmp_path)
    exported = export_study(study_dir)
    assert {item.trial for item in exported} == pareto_numbers() == {3, 5, 7}
    baseline_values = TRIALS[0][2]
    for item in exported:
        folder = study_dir / "export" / f"trial_{item.trial:04d}"
        for name in ("preset.yaml", "preset.json", "diffusers_vboost.py", "comfyui.json", "README.md"):
            assert (folder / name).is_file(), name
        assert not (folder / "diffusers_native.py").exists()  # diffusers has no Enhance-A-Video
        expected = EnhanceAVideo(weight=TRIALS[item.trial][1])
        for name in ("preset.yaml", "preset.json"):
            preset = Preset.load(folder / name)
            assert preset.build() == expected
            assert (preset.study, preset.trial, preset.backbone, preset.num_frames, preset.steps) == (
                study_dir.name, item.trial, "cogvideox", NUM_FRAMES, STEPS)
            assert [(o.name, o.direction, o.value, o.baseline) for o in preset.objectives] == [
                (n, d, TRIALS[item.trial][2][i], baseline_values[i]) for i, (n, d) in enumerate(OBJECTIVES)
            ]
    index = (study_dir / "export" / "README.md").read_text()
    assert all(f"trial_{n:04d}/README.md" in index for n in (3, 5, 7))


def test_no_password_in_any_exported_file(tmp_path, capsys):
    study_dir = build_sweep_dir(tmp_path)
    assert export_main([str(study_dir), "--out", str(tmp_path / "out")]) == 0
    text = all_written_text(tmp_path / "out")
    assert "README.md" in {p.name for p in (tmp_path / "out").iterdir()}
    assert SECRET not in text and SECRET not in capsys.readouterr().out
    assert mask_url(STORAGE_WITH_PASSWORD) == "postgresql://vboost:***@db.example.org:5432/sweeps"


def test_export_errors_are_one_line_and_masked(tmp_path, capsys):
    assert export_main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert export_main(["some_study", "--storage", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2
    assert "some_study" in capsys.readouterr().err
