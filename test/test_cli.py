"""The `dsa` command as a user meets it, through real subprocesses: one registration shape (every subcommand and
nested benchmark/format parses its own options and shows its defaults), and a mistake in the command line is one
line on stderr with exit status 2, never a traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dsa_core.cli import COMMANDS
from dsa_core.commands.bench import BENCHMARKS
from dsa_core.commands.synth import FORMATS

DSA = [sys.executable, "-P", "-m", "dsa_core.cli"]


def _dsa(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*DSA, *argv], capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parents[1])


def _one_line_error(proc: subprocess.CompletedProcess, prefix: str, *parts: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and "\n" not in err, proc.stderr
    assert err.startswith(prefix), err
    for part in parts:
        assert part in err, err


def test_user_mistakes_are_one_line_and_exit_2(tmp_path: Path) -> None:
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"not a checkpoint")
    _one_line_error(_dsa("info", str(garbage)), "dsa info: refusing checkpoint", str(garbage))  # refused checkpoint
    _one_line_error(_dsa("synth", "bag", "--out", str(tmp_path / "b"), "--frames", "10", "--fps", "2",
                         "--segment-frames", "60"), "dsa synth bag: ", "needs a zoom above")  # bad value, nested


def test_more_mistakes_in_process(tmp_path: Path, capsys) -> None:
    """The same contract through dsa_core.cli.main (no interpreter start per case: the machine has 2 cores)."""
    from dsa_core.cli import main

    def one_line(prefix: str, *argv: str) -> str:
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.startswith(prefix), err
        return err

    for text in ("preset: dsa_foo\nseeds: [0]\nvariants: [{name: a}]\n", "{broken"):  # bad plans
        (tmp_path / "plan.yaml").write_text(text)
        one_line("dsa study: ", "study", "--plan", str(tmp_path / "plan.yaml"), "--out", str(tmp_path / "o"))
    one_line("dsa study: study plan", "study", "--plan", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o"))
    one_line("dsa info: checkpoint not found", "info", str(tmp_path / "missing.pt"))  # bad path
    one_line("dsa info: unknown config field 'adapter.nope'", "info", "dsa_nano", "--set", "adapter.nope=1")
    one_line("dsa info: --set expects KEY=VALUE", "info", "dsa_nano", "--set", "streams")
    assert "is not a model dir" in one_line("dsa calibrate: ", "calibrate", "--model", str(tmp_path), "--val", str(tmp_path))
    assert "needs a zoom above" not in one_line("dsa train: unknown config field", "train", "--stage", "stage1",
                                                "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                                                "--set", "adapter.nope=1")


def test_argparse_refuses_malformed_options_with_status_2(tmp_path: Path) -> None:
    """Through a real process: argparse's refusals are one line too (no usage block), named by the (sub)command."""
    _one_line_error(_dsa("synth", "cityscapes", "--out", str(tmp_path), "--train", "many"),
                    "dsa synth cityscapes: error: argument --train: invalid", "'many'")  # bad type, nested
    _one_line_error(_dsa("train", "--stage", "stage1", "--preset", "dsa_foo", "--data", str(tmp_path), "--out",
                         str(tmp_path)), "dsa train: error: argument --preset: invalid choice: 'dsa_foo'")


def test_argparse_refusals_in_process_are_one_line_without_usage(capsys) -> None:
    """Bad choice, missing argument, unknown option, at each level: ``<prog>: error: ...`` alone, exit status 2."""
    from dsa_core.cli import main

    for argv, prefix, part in ((["nosuch"], "dsa: error: argument COMMAND: invalid choice: 'nosuch'", "info"),
                               (["info"], "dsa info: error: the following arguments are required: model", ""),
                               (["info", "dsa_nano", "--bogus"], "dsa info: error: unrecognized arguments: --bogus", ""),
                               (["bench", "nope"], "dsa bench: error: argument benchmark: invalid choice: 'nope'", ""),
                               (["export", "--out", "x", "--precision", "fp8"],
                                "dsa export: error: argument --precision: invalid choice: 'fp8'", "fp16")):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        err = captured.err.strip()
        assert "\n" not in err and err.startswith(prefix) and part in err, (argv, err)
        assert "usage:" not in captured.err + captured.out, argv


def test_every_command_benchmark_and_format_shows_its_defaults() -> None:
    for argv, default in ((("train", "--help"), "(default: dsa_nano)"), (("synth", "fs_laf", "--help"), "(default: 100)"),
                          (("bench", "metrics", "--help"), "(default: 100000000)"),
                          (("bag-eval", "--help"), "(default: onnxruntime,torch)")):
        proc = _dsa(*argv)
        assert proc.returncode == 0 and default in " ".join(proc.stdout.split()), (argv, proc.stdout)
    import importlib

    for registry in (COMMANDS, BENCHMARKS, FORMATS):  # one shape: each entry names a module with both functions
        for name, (module_name, help_text) in registry.items():
            module = importlib.import_module(module_name)
            assert callable(module.add_arguments) and callable(module.run) and help_text, name


def test_the_metrics_benchmark_runs_from_its_new_home(tmp_path: Path) -> None:
    out = tmp_path / "bench_metrics.json"
    proc = _dsa("bench", "metrics", "--pixels", "20000", "--sklearn-pixels", "5000", "--image-pixels", "4096",
                "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["comparison"]["max_abs_diff_subset"] < 1e-9  # ours = sklearn on the same pixels
    assert out.with_suffix(".md").is_file()


def test_export_score_order_flag_reaches_the_manifest_and_bad_values_are_one_line(tmp_path: Path) -> None:
    out = tmp_path / "m"
    done = _dsa("export", "--preset", "dsa_nano", "--out", str(out), "--height", "64", "--width", "128",
                "--graphs", "fused", "--score-order", "classes_first")
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "manifest.json").read_text())["score_order"] == "classes_first"
    bad = _dsa("export", "--preset", "dsa_nano", "--out", str(tmp_path / "b"), "--height", "64", "--width", "128",
               "--graphs", "fused", "--score-order", "late")
    assert bad.returncode == 2 and "--score-order must be one of mask2former, classes_first" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "b" / "manifest.json").exists()
