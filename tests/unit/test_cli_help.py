"""`lamina COMMAND -h` describes every option and argument of every command: the test walks
every parser (subcommands too) and names each one without a help text."""

from __future__ import annotations

import argparse

from adapters.cli.app import build_parser

# Described later, in the modules being changed for them when this test came (their owners
# add the texts with their options; an entry here that gains a text fails the test, so the
# list only shrinks): run/create's options (adapters/cli/storage.add_create_options), the
# runtime verbs (adapters/cli/runtime.py), the image verbs of adapters/cli/storage.py, the
# global --log-* options (adapters/cli/app.py).
NOT_YET: dict[str, set[str]] = {}


def undescribed() -> dict[str, set[str]]:
    """Each command's options and arguments without a help text (every command a key)."""
    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        found.setdefault(path, set())
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and \
                    (not action.help or action.help == argparse.SUPPRESS):
                name = "/".join(action.option_strings) or action.dest
                found[path].add(name)

    walk(build_parser(), "lamina")
    return found


def test_every_option_and_argument_has_a_description() -> None:
    missing = {cmd: names - NOT_YET.get(cmd, set()) for cmd, names in undescribed().items()
               if "*" not in NOT_YET.get(cmd, set())}
    assert {cmd: sorted(n) for cmd, n in missing.items() if n} == {}


def test_the_list_of_those_not_yet_described_only_shrinks() -> None:
    found = undescribed()
    listed = {cmd: names for cmd, names in NOT_YET.items() if cmd in found}
    stale = {cmd: sorted(names - found[cmd]) for cmd, names in listed.items()
             if "*" not in names and names - found[cmd]}
    stale.update({cmd: ["*"] for cmd, names in listed.items() if "*" in names
                  and not found[cmd]})
    assert stale == {}, "described now: take them off NOT_YET"


def test_list_commands_describe_their_template_fields() -> None:
    parser = build_parser(["ps"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    ps = sub.choices["ps"]
    fmt = next(a for a in ps._actions if "--format" in a.option_strings)
    assert "{{.ID}}" in (fmt.help or "") and "RunningFor" in (fmt.help or "")
