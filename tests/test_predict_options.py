"""The options predict, age-sweep and batch share (babygan.cli.options): same names, same checks."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from babygan.cli import main

COMMANDS = (["predict", "a.jpg", "b.jpg"], ["age-sweep", "a.jpg", "b.jpg"], ["batch", "pairs.csv"])


def _invoke(tmp_path, args):
    """Run a command with its file arguments made (empty) in tmp_path."""
    for name in ("a.jpg", "b.jpg", "pairs.csv"):
        (tmp_path / name).touch()
    args = [str(tmp_path / a) if a in ("a.jpg", "b.jpg", "pairs.csv") else a for a in args]
    return CliRunner().invoke(main, args)


@pytest.mark.parametrize("cmd", ["predict", "age-sweep", "batch", "generate"])
def test_model_has_short_form(cmd):
    res = CliRunner().invoke(main, [cmd, "--help"])
    assert res.exit_code == 0
    assert "-m, --model" in res.output and "--offline" in res.output


@pytest.mark.parametrize("args", COMMANDS)
@pytest.mark.parametrize("lr", ["0", "-0.1"])
def test_lr_must_be_positive(tmp_path, args, lr):
    res = _invoke(tmp_path, [*args, "--lr", lr])
    assert res.exit_code == 2
    assert "Invalid value for '--lr'" in res.output and "not in the range x>0" in res.output


@pytest.mark.parametrize("args", COMMANDS)
@pytest.mark.parametrize(
    ("option", "value"), [("--decay-rate", "0"), ("--decay-rate", "1.5"), ("--decay-percent", "0")]
)
def test_decay_options_are_checked(tmp_path, args, option, value):
    res = _invoke(tmp_path, [*args, option, value])
    assert res.exit_code == 2
    assert f"Invalid value for '{option}'" in res.output


@pytest.mark.parametrize("args", COMMANDS)
def test_shared_options_parse_the_same(tmp_path, args, monkeypatch):
    """-m is --model everywhere; the session gets it (stopped before any model loads)."""
    from babygan.cli.options import SessionOptions

    seen = {}

    def fake_open(self, **_kw):
        seen["model"], seen["offline"], seen["quiet"] = self.model, self.offline, self.quiet
        raise SystemExit(0)

    monkeypatch.setattr(SessionOptions, "open", fake_open)
    res = _invoke(tmp_path, [*args, "-m", "tiny.npz", "--offline", "-q", "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    assert seen == {"model": "tiny.npz", "offline": True, "quiet": True}


@pytest.mark.parametrize("child_first", [True, False])
def test_option_decorators_stack_in_any_order(child_first):
    """The session learns the directions the child options use whichever decorator is outermost."""
    import click

    from babygan.cli.options import child_options, session_options

    seen = {}

    def body(options, session):
        seen["directions"] = session.directions

    decorators = [child_options(), session_options]
    if not child_first:
        decorators.reverse()
    for decorate in reversed(decorators):
        body = decorate(body)
    command = click.command()(body)
    args = ["-m", "tiny.npz", "--precision", "fp32", "--smile", "1", "--shift", "eyes_open=0.5"]
    res = CliRunner().invoke(command, args)
    assert res.exit_code == 0, res.output
    assert seen["directions"] == ("age", "smile", "eyes_open")


def test_defaults_are_the_librarys():
    """--help shows the defaults of ChildOptions and babygan.latent, not numbers typed again."""
    from babygan import latent
    from babygan.pipeline import ChildOptions

    text = " ".join(CliRunner().invoke(main, ["predict", "--help"], terminal_width=200).output.split())
    defaults = ChildOptions()
    assert f"default: {defaults.genes}" in text and f"default: {defaults.layers}" in text
    assert f"default {latent.DEFAULT_AGE_YEARS:g}" in text
    sweep = " ".join(CliRunner().invoke(main, ["age-sweep", "--help"], terminal_width=200).output.split())
    assert latent.DEFAULT_SWEEP_AGES in sweep
