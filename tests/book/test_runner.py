"""The runner and the command line: validation before work, atomic runs, reuse, failed runs."""
import json
import os
import subprocess
import sys

import pytest

from fairbook.book import cli, runner
from fairbook.errors import ParameterError


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fairbook.book.cli", *args], capture_output=True,
                          text=True, env=os.environ.copy())


def _tree(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else None


@pytest.mark.parametrize("args,words", [
    (["run", "nope"], ["unknown chapter 'nope'", "mime"]),
    (["run", "toy", "-p", "bogus", "1"], ["unknown parameter 'bogus'", "'1'", "n, p, mode, fail"]),
    (["run", "toy", "-p", "n", "-3"], ["'n'", "-3", ">= 0"]),
    (["run", "toy", "-p", "n", "x"], ["'n'", "'x'", "an integer"]),
    (["run", "toy", "-p", "p", "1.5"], ["'p'", "1.5", "[0, 1]"]),
    (["run", "toy", "-p", "mode", "c"], ["'mode'", "'c'", "one of a, b"]),
    (["run", "toy", "--profile", "huge"], ["unknown profile 'huge'", "smoke, default, paper"]),
    (["run", "mime", "--profile", "smoke", "-p", "trials", "-1"], ["'trials'", "-1", ">= 4"]),
    (["run", "mime", "--profile", "smoke", "-p", "betas", "0.5,1"], ["'betas'", "including 0"]),
    (["run", "mime", "--profile", "smoke", "-p", "minor_sep", "2"], ["'minor_sep'", "below major_sep"]),
    (["run", "mime", "--profile", "smoke", "-p", "prior", "inf"], ["'prior'", "inf", "[0.05, 0.95]"]),
])
def test_bad_requests_fail_before_any_work(project, args, words):
    before = _tree(project / "runs")
    res = _cli(*args)
    assert res.returncode == 2, res.stderr
    for w in words:
        assert w in res.stderr, (w, res.stderr)
    assert "Executing" not in res.stderr and "running" not in res.stderr
    assert _tree(project / "runs") == before  # nothing created or touched


def test_profile_naming_unknown_parameter_is_an_error(project, monkeypatch, tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for p in ("smoke", "default", "paper"):
        (profiles / f"{p}.yml").write_text("toy:\n  n: 2\n")
    (profiles / "smoke.yml").write_text("toy:\n  nn: 2\n")
    monkeypatch.setattr("fairbook.book.chapters.PROFILES_DIR", profiles)
    with pytest.raises(ParameterError, match="profile 'smoke' sets parameter 'nn'.*does not declare"):
        runner.prepare("toy", "smoke")
    (profiles / "smoke.yml").write_text("toy:\n  n: -2\n")
    with pytest.raises(ParameterError, match="'n'.*profile 'smoke'.*-2"):
        runner.prepare("toy", "smoke")


@pytest.mark.slow
def test_run_reuse_force_and_failure(project):
    first = runner.run("toy", "smoke", {"n": "4"}, log=lambda m: None)
    assert not first.reused
    files = _tree(first.path)
    assert {"toy.ipynb", "provenance.json", "results/table.csv", "figures"} <= set(files)
    prov = first.provenance
    assert prov["parameters"] == {"n": 4, "p": 0.5, "mode": "a", "fail": False}
    for key in ("fairbook_version", "git_commit", "packages", "device", "data", "started", "finished",
                "wall_time_s", "seeds", "python"):
        assert key in prov
    assert prov["results"] == ["table.csv"]
    assert "rows 4" in first.notebook.read_text()

    again = runner.run("toy", "smoke", {"n": "4"}, log=lambda m: None)
    assert again.reused and again.path == first.path
    other = runner.run("toy", "smoke", {"n": "5"}, log=lambda m: None)
    assert not other.reused and other.path != first.path

    stamp = (first.path / "provenance.json").stat().st_mtime_ns
    forced = runner.run("toy", "smoke", {"n": "4"}, force=True, log=lambda m: None)
    assert not forced.reused and forced.path == first.path
    assert (first.path / "provenance.json").stat().st_mtime_ns != stamp

    # A failing request with the same directory name never touches the good run.
    good = _tree(first.path)
    with pytest.raises(runner.RunFailed) as e:
        runner.run("toy", "smoke", {"n": "4", "fail": "true"}, log=lambda m: None)
    msg = str(e.value)
    assert "ValueError: toy failure requested" in msg and 'raise ValueError("toy failure' in msg
    assert e.value.path.name.startswith("FAILED-smoke-") and (e.value.path / "toy.ipynb").exists()
    assert _tree(first.path) == good
    assert not list((project / "runs" / "toy").glob(".tmp-*"))


@pytest.mark.slow
def test_cli_run_prints_directory_and_cell_error(project):
    ok = _cli("run", "toy", "--profile", "smoke", "-p", "n", "2")
    assert ok.returncode == 0, ok.stderr
    path = ok.stdout.strip().splitlines()[-1]
    assert os.path.isdir(path) and json.load(open(os.path.join(path, "provenance.json")))["parameters"]["n"] == 2
    bad = _cli("run", "toy", "--profile", "smoke", "-p", "fail", "true")
    assert bad.returncode == 1
    assert "toy failure requested" in bad.stderr and "FAILED-" in bad.stderr


def test_list_shows_parameters_types_profiles_meanings(capsys, project):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mime:" in out and "toy:" in out
    assert "trials (int) — training sets per beta" in out
    assert "smoke=4, default=2000, paper=2000" in out
    assert "allowed: an integer, a value >= 4" in out


def test_data_command_lists_every_dataset_and_where(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("FAIRBOOK_DATA", raising=False)
    assert cli.main(["data"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert {"adult", "compas", "german", "fashion-mnist", "mnist", "digits", "cifar10", "celeba"} <= set(lines)
    assert "found: " in lines["adult"] and "NOT FOUND" in lines["cifar10"] and "FAIRBOOK_DATA" in lines["cifar10"]


def test_missing_dataset_stops_the_run_before_any_work(project, tmp_path):
    before = _tree(project / "runs")
    res = _cli("run", "mime", "--profile", "smoke", "-p", "datasets", "fairface", "-p", "data_root",
               str(tmp_path / "nowhere"))
    assert res.returncode == 2
    assert "dataset 'fairface' not found" in res.stderr and str(tmp_path / "nowhere") in res.stderr
    assert _tree(project / "runs") == before


def test_path_parameters_become_absolute_before_the_kernel(tmp_path, monkeypatch):
    """The kernel runs in the run directory: relative file parameters are resolved from the caller's
    directory first (AIM-Fair's Stable Diffusion layout and checkpoint, every chapter's data_root)."""
    import torch
    import torchvision

    from fairbook.generative import sd

    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / sd.MANIFEST).write_text("file\n")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "w.pt")
    from test_data_fullscale import make_celeba

    make_celeba(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    _, values, _, _ = runner.prepare("aimfair", "smoke", {"dataset": "celeba", "model": "resnet18", "data_root": "data",
                                                          "sd_images": "layout", "weights": "w.pt"})
    assert values["sd_images"] == str(layout.resolve()) and values["weights"] == str((tmp_path / "w.pt").resolve())
    assert values["data_root"] == str((tmp_path / "data").resolve())
