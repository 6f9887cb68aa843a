"""bench/record_model.py: the recipe of the model of record stays runnable as the CLIs change.

The rebuild takes hours, so this checks what can break silently: every step's command line
must parse with today's ``intentd-train`` / ``intentd-eval``, and each step may only read
models that earlier steps wrote.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _recipe():  # type: ignore[no-untyped-def]
    path = ROOT / "bench" / "record_model.py"
    spec = importlib.util.spec_from_file_location("record_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parse(argv: list[str]):  # type: ignore[no-untyped-def]
    from intentd.trainer.cli import _build_parser
    from intentd.trainer.evaluation.cli import build_parser

    if argv[0] == "intentd-eval":
        return build_parser().parse_args(argv[1:])
    assert argv[0] == "intentd-train"
    return _build_parser(argv[1]).parse_args(argv[1:])


@pytest.mark.parametrize("rounds", [(2,), (3, 3), (3, 2, 4)])
def test_every_step_parses_and_reads_only_earlier_outputs(tmp_path: Path,
                                                          rounds: tuple[int, ...]) -> None:
    rm = _recipe()
    plan = rm.steps(tmp_path, rounds=rounds, threads=1)
    names = [n for n, _ in plan]
    assert len(names) == len(set(names))
    final = f"soup{len(rounds) + 1}" if len(rounds) == 1 else "final"
    assert names[-1] == final
    written: set[Path] = set()
    for name, argv in plan:
        args = _parse(argv)
        if args.command == "synth":
            assert Path(args.out) == tmp_path / name
            written.add(tmp_path / name)
            continue
        reads = args.model if isinstance(args.model, list) else [args.model]
        if args.command != "fit":  # fit's --model is "compact", not a dir
            assert {Path(m) for m in reads} <= written, f"{name} reads a model not yet built"
        assert Path(args.data) == tmp_path / "data"
        assert Path(args.out) == tmp_path / name
        written.add(tmp_path / name)
    soups = {n: _parse(a).model for n, a in plan if n.startswith("soup") or n == "final"}
    assert len(soups["soup1"]) == 4
    seeds = []
    for k, n in enumerate(rounds, start=2):
        members = soups[f"soup{k}"]
        assert len(members) == n
        for m in members:  # each member continues the previous round's soup
            args = _parse(dict(plan)[Path(m).name])
            assert Path(args.model) == tmp_path / f"soup{k - 1}" and args.epochs == 1
            seeds.append(args.seed)
    # Seeds run on from 5, so a recipe with more rounds rebuilds a shorter one's models.
    assert seeds == list(range(5, 5 + sum(rounds)))
    if len(rounds) > 1:  # the model of record averages every later-round member
        assert len(soups["final"]) == sum(rounds)
    for name, argv in rm.evaluations(tmp_path, tmp_path / final):
        args = _parse(argv)
        assert Path(args.model) == tmp_path / final
        assert Path(args.out) == tmp_path / "eval" / name


def test_dry_run_prints_every_command_and_a_one_member_round_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rm = _recipe()
    assert rm.main(["--out", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(rm.steps(tmp_path)) + len(rm.evaluations(tmp_path, tmp_path))
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
    with pytest.raises(SystemExit) as exc:
        rm.main(["--out", str(tmp_path), "--rounds", "3", "1"])
    assert exc.value.code == 2
    assert "--rounds: every round needs >= 2 members" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
