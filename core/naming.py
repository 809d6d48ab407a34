"""Docker-style random names (`brave_turing`) for containers created without --name.

Pure: the name is derived from the container's id, so replaying the log gives the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Container

ADJECTIVES = (
    "admiring", "brave", "clever", "dazzling", "eager", "focused", "gallant", "happy",
    "jolly", "keen", "loving", "modest", "nifty", "optimistic", "peaceful", "quirky",
    "relaxed", "serene", "tender", "upbeat", "vibrant", "wizardly", "xenial", "youthful",
    "zealous", "bold", "calm", "daring", "elegant", "friendly", "gracious", "hopeful",
)
SURNAMES = (
    "babbage", "curie", "dijkstra", "einstein", "feynman", "galileo", "hopper", "hypatia",
    "kepler", "knuth", "lamarr", "lovelace", "mccarthy", "noether", "pascal", "ritchie",
    "shannon", "thompson", "torvalds", "turing", "wozniak", "yalow", "zuse", "bohr",
    "darwin", "euler", "fermat", "gauss", "hamilton", "lamport", "liskov", "morse",
)


def name_for(container_id: str,
             taken: Callable[[str], bool] | Container[str] = frozenset()) -> str:
    """A free `adjective_surname` picked by the id; a digit is appended on collision.

    `taken` is a set of names or a lookup, so a caller with thousands of containers asks
    only about the candidates instead of loading every name."""
    is_taken = taken if callable(taken) else taken.__contains__
    n = int(container_id[:16], 16)
    base = f"{ADJECTIVES[n % len(ADJECTIVES)]}_{SURNAMES[(n >> 8) % len(SURNAMES)]}"
    name, i = base, 1
    while is_taken(name):
        i += 1
        name = f"{base}{i}"
    return name
