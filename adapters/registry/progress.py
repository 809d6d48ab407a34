"""What a pull or push reports as it goes, in a module of its own: every lamina command
imports the CLI's registry verbs, which subclass it, and must not pay for the registry client."""

from __future__ import annotations

from collections.abc import Sequence


class Progress:
    """What a pull or push reports as it goes; this one says nothing (tests, --quiet)."""

    def begin(self, title: str, layers: Sequence[tuple[str, int, str]]) -> None:
        """`layers`: (digest, size, first status) for each layer."""

    def update(self, digest: str, status: str, done: int = 0, total: int = 0) -> None:
        pass

    def end(self) -> None:
        pass
