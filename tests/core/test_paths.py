"""Every file the project writes stays inside its folder: names made from config values are slugs
(`harness.core.paths.slug`, `child`), and nothing under a sweep directory is written or deleted
through a symbolic link (`no_links`, O_NOFOLLOW for the lock)."""

from __future__ import annotations

import os

import pytest
from fakes_paths import two_cells

from harness.core.paths import child, no_links, slug
from harness.report.results import load


def test_slugs_keep_names_inside_their_folder(tmp_path):
    assert slug("../../../../tmp/x") == "tmp_x" and slug("+-,+-/") == "+-_+-" and slug("") == "_"
    assert slug("a\nb") == "a_b" and slug(".hidden") == "hidden" and len(slug("x" * 500)) == 80
    assert child(tmp_path, slug("../../etc/passwd") + ".png").parent == tmp_path
    with pytest.raises(ValueError, match="outside"):
        child(tmp_path, "../x.png")


def test_a_config_value_with_a_path_in_it_plots_inside_the_plots_folder(tmp_path):
    """Issue 34: `model.wrong_answer=../../../../tmp/x` made `make plot` write a PNG outside the
    results folder, and `task.operators=+-,+-/` wrote into a sub-folder named after the value."""

    from harness.plot import main as plot_main

    sweep = two_cells(tmp_path / "results", "../../../../outside/x")
    assert plot_main(["--sweep", "s", "--results-dir", str(tmp_path / "results")]) == 0
    pngs = list((sweep / "plots").rglob("*.png"))
    assert pngs and all(p.parent == sweep / "plots" for p in pngs)
    assert not (tmp_path / "outside").exists() and not list(tmp_path.rglob("x*.png"))
    assert load("s", tmp_path / "results").table()["task.difficulty"].tolist()  # still tabled, as it is


def test_no_links_refuses_a_link_anywhere_below_the_root(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "s" / "cells").mkdir(parents=True)
    os.symlink(tmp_path / "real", tmp_path / "s" / "cells" / "abc")
    with pytest.raises(ValueError, match="symbolic link"):
        no_links(tmp_path / "s" / "cells" / "abc" / "done.json", tmp_path / "s")
    no_links(tmp_path / "s" / "cells" / "other", tmp_path / "s")  # a plain path passes


def test_a_symlinked_lock_is_refused_and_its_target_kept(tmp_path, capfd):
    from harness.sweep import main

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "r" / "s").mkdir(parents=True)
    os.symlink(victim, tmp_path / "r" / "s" / ".lock")
    code = main(["model=mock", "logger=none", "method=zero_shot", "budget=1", "task.test_size=4",
                 f"results_dir={tmp_path / 'r'}", "sweep=s"])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ".lock cannot be the sweep's lock file" in err[0]
    assert victim.read_text() == "precious"


def test_a_symlinked_cell_directory_fails_its_cell_and_its_target_is_untouched(tmp_path, capfd):
    from harness.runner.plan import plan
    from harness.sweep import main

    args = ["model=mock", "logger=none", "method=zero_shot", "budget=1", "task.test_size=4",
            f"results_dir={tmp_path / 'r'}", "sweep=s"]
    _, specs, _ = plan(args)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    (victim / "status.json").write_text("{}")
    specs[0].out_dir.parent.mkdir(parents=True)
    os.symlink(victim, specs[0].out_dir)
    assert main(args) == 1
    assert "symbolic link" in capfd.readouterr().out
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt", "status.json"]
    assert (victim / "keep.txt").read_text() == "precious" and (victim / "status.json").read_text() == "{}"
