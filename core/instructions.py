"""What the Dockerfile instructions that change only an image's config do: ENV, LABEL, CMD,
ENTRYPOINT, WORKDIR, USER, STOPSIGNAL, MAINTAINER, EXPOSE, VOLUME, SHELL, HEALTHCHECK.

One implementation for the build's metadata steps (core/build.py) and for docker's
`--change` of commit and import (apply_changes), so `commit --change 'ENV A=b'` makes the
config a build's `ENV A=b` makes. The engine imports it only when a --change is given: the
Dockerfile parser is no cost of the hot path. It imports nothing of the engine or the build,
which both use it.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.dockerfile import Dockerfile, Instruction, expand, expand_words, key_values, parse
from core.errors import BadInput
from core.model import Image

DEFAULT_SHELL = ["/bin/sh", "-c"]


@dataclass
class StageState:
    """A build stage's running state: the image so far and what the next step sees
    (a --change sees an image's config and no ARGs)."""

    image: Image
    config: dict[str, Any]
    args: dict[str, str | None] = field(default_factory=dict)
    cmd_set: bool = False

    def env(self) -> dict[str, str]:
        """Substitution values: ARGs, overridden by the image's ENV (docker's order)."""
        out = {k: v for k, v in self.args.items() if v is not None}
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    def run_args(self) -> list[str]:
        """ARGs with values that no ENV overrides: RUN's extra environment, sorted."""
        env_keys = {item.partition("=")[0] for item in self.config.get("Env") or []}
        return sorted(f"{k}={v}" for k, v in self.args.items()
                      if v is not None and k not in env_keys)

    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)


def _json_list(items: Sequence[str]) -> str:
    """docker's Go `%q` of a string slice: ["/bin/sh" "-c" "echo hi"]."""
    return "[" + " ".join(json.dumps(i, ensure_ascii=False) for i in items) + "]"


def metadata(df: Dockerfile, state: StageState, ins: Instruction) -> tuple[dict[str, Any], str]:
    """The config after a metadata-only instruction, and its history comment."""
    k, config, env, esc = ins.keyword, dict(state.config), state.env(), df.escape
    if k == "ENV":
        pairs = key_values("ENV", ins.rest, env, esc)
        config["Env"] = _set_env(config.get("Env") or [], pairs)
        return config, "ENV " + " ".join(f"{key}={value}" for key, value in pairs)
    if k == "LABEL":
        pairs = [(ins.exec_form[0], ins.exec_form[1])] if ins.exec_form is not None \
            else key_values("LABEL", ins.rest, env, esc)
        config["Labels"] = {**(config.get("Labels") or {}), **dict(pairs)}
        return config, "LABEL " + " ".join(f"{key}={value}" for key, value in pairs)
    if k in ("CMD", "ENTRYPOINT"):
        argv = list(ins.exec_form) if ins.exec_form is not None \
            else [*state.shell(), ins.rest]
        if k == "CMD":
            config["Cmd"] = argv
            state.cmd_set = True
        else:
            config["Entrypoint"] = argv
            if not state.cmd_set:
                config["Cmd"] = None  # docker: an ENTRYPOINT resets an inherited CMD
        return config, f"{k} {_json_list(argv)}"
    if k == "WORKDIR":
        path = expand(ins.rest, env, esc)
        path = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/", path))
        config["WorkingDir"] = path
        return config, f"WORKDIR {path}"
    if k in ("USER", "STOPSIGNAL", "MAINTAINER"):
        value = expand(ins.rest, env, esc)
        config[{"USER": "User", "STOPSIGNAL": "StopSignal"}.get(k, "Maintainer")] = value
        return config, f"{k} {value}"
    if k == "EXPOSE":
        ports = expand_words(ins.rest, env, esc)
        config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}),
                                  **{p if "/" in p else f"{p}/tcp": {} for p in ports}}
        return config, "EXPOSE " + " ".join(ports)
    if k == "VOLUME":
        vols = list(ins.exec_form) if ins.exec_form is not None \
            else expand_words(ins.rest, env, esc)
        config["Volumes"] = {**(config.get("Volumes") or {}), **{v: {} for v in vols}}
        return config, f"VOLUME [{' '.join(vols)}]"
    if k == "HEALTHCHECK":
        from core.dockerfile import healthcheck
        from core.health import history_text

        config["Healthcheck"] = healthcheck(ins)
        return config, history_text(config["Healthcheck"])
    if k == "SHELL":
        config["Shell"] = list(ins.exec_form or ())
        return config, f"SHELL [{' '.join(ins.exec_form or ())}]"
    if k == "ONBUILD":  # kept as written, for the builds that start FROM this image
        config["OnBuild"] = [*(config.get("OnBuild") or []), ins.rest]
        return config, f"ONBUILD {ins.rest}"
    raise BadInput(f"unknown instruction: {k}")  # the parser let through only the above


# docker's validCommitCommands: what `commit --change` and `import --change` may say
CHANGE_INSTRUCTIONS = frozenset({"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER",
                                 "VOLUME", "WORKDIR", "STOPSIGNAL", "ONBUILD"})


def apply_changes(image: Image | None, config: Mapping[str, Any],
                  changes: Sequence[str]) -> dict[str, Any]:
    """`commit --change` / `import --change`: Dockerfile instructions applied to an image's
    config, as the build applies them (the same parser and the same metadata steps)."""
    out = dict(config)
    if not changes:
        return out
    df = parse("FROM scratch\n" + "\n".join(changes), name="--change")
    state = StageState(image=image, config=out)  # type: ignore[arg-type]
    for ins in df.stages[0].instructions:
        if ins.keyword not in CHANGE_INSTRUCTIONS:
            raise BadInput(f"{ins.keyword} is not a valid change command")
        state.config, _ = metadata(df, state, ins)
    return state.config


def _set_env(env: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[str]:
    out = {item.partition("=")[0]: item for item in env}
    for key, value in pairs:
        out[key] = f"{key}={value}"
    return list(out.values())
