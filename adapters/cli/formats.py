"""What `--format TEMPLATE` and `inspect -f` print: list rows through docker's Go templates
(adapters/cli/templates.py; the rows in adapters/cli/rows.py) and inspect's documents, as
JSON or through a template. A bad template is one line, docker's `template parsing error:
...`, exit 1, and nothing else printed.

Cheap to import (the template engine is imported only when a template is given).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO


def is_template(fmt: str | None) -> bool:
    """A --format that is neither lamina's `table` nor `json`: a Go template."""
    return bool(fmt) and fmt not in ("table", "json")


def quiet_warning(fmt: str | None) -> None:
    """docker's: -q wins over a --format given with it, and says so."""
    if fmt and fmt != "table":
        print("WARNING: Ignoring custom format, because both --format and --quiet are set.",
              file=sys.stderr)


def templated(fmt: str, rows: Iterable[Any], headers: Mapping[str, str],
              out: TextIO | None = None) -> None:
    """A list command's rows through a template (`table ...`: headed and aligned)."""
    from adapters.cli import templates
    from core.errors import BadInput

    try:
        text = templates.format_rows(fmt, rows, headers)
    except templates.TemplateError as err:
        raise BadInput(str(err)) from None
    (out or sys.stdout).write(text)


def inspected(docs: Sequence[Any], fmt: str | None, out: TextIO | None = None) -> None:
    """inspect's output: the documents as an indented JSON list, or each through `-f`
    (`-f json`: docker's `{{json .}}`, one document a line)."""
    out = out or sys.stdout
    if not fmt:
        out.write(json.dumps(list(docs), indent=4, ensure_ascii=False) + "\n")
        return
    from adapters.cli import templates
    from core.errors import BadInput

    try:
        text = templates.format_each("{{json .}}" if fmt == "json" else fmt, docs)
    except templates.TemplateError as err:
        raise BadInput(str(err)) from None
    out.write(text)
