"""docker's Go templates (adapters/cli/templates.py): docker's own documented examples
(docs.docker.com "Format command and log output", docker ps/images/inspect --format), Go's
text/template rules, the `table` heads and Go's tabwriter alignment."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.cli import templates as t
from adapters.cli.templates import Row, TemplateError

CONTAINER: dict[str, Any] = {
    "Id": "7e8c1a9b2f3d" + "0" * 52,
    "Name": "/web",
    "Path": "nginx",
    "Args": ["-g", "daemon off;"],
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0,
              "Health": None},
    "Image": "sha256:" + "a" * 64,
    "Config": {"Labels": {"com.example.vendor": "ACME", "tier": "front"},
               "Env": ["PATH=/usr/bin", "A=1"], "Entrypoint": None, "Tty": False},
    "Mounts": [{"Type": "volume", "Name": "data", "Source": "/var/lib/v/data/_data",
                "Destination": "/data", "RW": True},
               {"Type": "bind", "Name": "", "Source": "/srv", "Destination": "/srv",
                "RW": False}],
    "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2",
                                                "MacAddress": "02:42:ac:11:00:02"},
                                     "back": {"IPAddress": "10.0.0.5",
                                              "MacAddress": "02:42:0a:00:00:05"}}},
    "HostConfig": {"Binds": ["/srv:/srv:ro"], "LogConfig": {"Type": "json-file"}},
}


def render(text: str, data: Any = CONTAINER) -> str:
    return t.parse(text).render(data)


# --- docker's documented examples --------------------------------------------------------


@pytest.mark.parametrize(("template", "expected"), [
    ('{{join .Args " , "}}', "-g , daemon off;"),
    ("{{json .Mounts}}",
     '[{"Type":"volume","Name":"data","Source":"/var/lib/v/data/_data",'
     '"Destination":"/data","RW":true},{"Type":"bind","Name":"","Source":"/srv",'
     '"Destination":"/srv","RW":false}]'),
    ("{{lower .Name}}", "/web"),
    ("{{upper .Name}}", "/WEB"),
    ("{{title .Name}}", "/Web"),
    ('{{split .Image ":"}}', "[sha256 " + "a" * 64 + "]"),
    ("{{range .NetworkSettings.Networks}}{{println .IPAddress}}{{end}}",
     "10.0.0.5\n172.17.0.2\n"),  # a map ranges in key order
    # docker inspect's examples
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "10.0.0.5172.17.0.2"),
    ("{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}",
     "02:42:0a:00:00:0502:42:ac:11:00:02"),
    ("{{.HostConfig.LogConfig.Type}}", "json-file"),
    ("{{json .Config}}",
     '{"Labels":{"com.example.vendor":"ACME","tier":"front"},"Env":["PATH=/usr/bin","A=1"],'
     '"Entrypoint":null,"Tty":false}'),
    ('{{index .Config.Labels "com.example.vendor"}}', "ACME"),
    ('{{(index .NetworkSettings.Networks "bridge").IPAddress}}', "172.17.0.2"),
    ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}",
     "/var/lib/v/data/_data:/data /srv:/srv "),
    ("{{.State.Status}} {{.State.Pid}} {{.State.Running}}", "running 4242 true"),
    ("{{.Config.Env}}", "[PATH=/usr/bin A=1]"),
    ("{{.Config.Labels}}", "map[com.example.vendor:ACME tier:front]"),
])
def test_docker_documented_examples(template: str, expected: str) -> None:
    assert render(template) == expected


def test_json_of_everything_round_trips() -> None:
    import json

    assert json.loads(render("{{json .}}")) == CONTAINER
    assert render("{{.Config | json}}") == render("{{json .Config}}")


# --- Go's text/template --------------------------------------------------------------------


@pytest.mark.parametrize(("template", "expected"), [
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .State.ExitCode}}failed{{else if .State.Running}}running{{else}}x{{end}}",
     "running"),
    ('{{if eq .State.Status "exited" "running"}}known{{end}}', "known"),
    ('{{if and .State.Running (gt .State.Pid 1)}}ok{{end}}', "ok"),
    ('{{if or .State.Health "none"}}{{or .State.Health "none"}}{{end}}', "none"),
    ("{{if not .Config.Tty}}no tty{{end}}", "no tty"),
    ("{{with .Config.Labels.tier}}tier={{.}}{{else}}none{{end}}", "tier=front"),
    ("{{with .Config.Nope}}x{{else}}none{{end}}", "none"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
     "com.example.vendor=ACME;tier=front;"),
    ("{{range $i, $a := .Args}}{{if $i}},{{end}}{{$a}}{{end}}", "-g,daemon off;"),
    ("{{range .Nothing}}x{{else}}empty{{end}}", "empty"),
    ("{{range .Args}}{{if eq . \"-g\"}}{{continue}}{{end}}{{.}}{{end}}", "daemon off;"),
    ("{{range .Args}}{{.}}{{break}}{{end}}", "-g"),
    ("{{range 3}}{{.}}{{end}}", "012"),
    ("{{$n := .Name}}{{$n}} {{$.Path}}", "/web nginx"),
    ("{{$x := 1}}{{$x = 2}}{{$x}}", "2"),
    ("{{range .Mounts}}{{$.Name}}:{{.Destination}} {{end}}", "/web:/data /web:/srv "),
    ('{{printf "%s has pid %d" .Name .State.Pid}}', "/web has pid 4242"),
    ('{{printf "%-6s|%6s|%05d|%x|%q|%v|%t" "ab" "cd" 42 255 "q" .Args true}}',
     'ab    |    cd|00042|ff|"q"|[-g daemon off;]|true'),
    ('{{printf "%.2f %5.1f" 3.14159 2.0}}', "3.14   2.0"),
    ('{{printf "%d"}} {{printf "%s" 1}} {{printf "x" 1}}',
     "%!d(MISSING) %!s(int=1) x%!(EXTRA int=1)"),
    ("{{.Name | printf \"%s!\"}}", "/web!"),
    ("{{.Name | lower | upper}}", "/WEB"),
    ("{{len .Args}} {{len .Config.Labels}} {{len .Name}}", "2 2 4"),
    ("{{index .Args 1}} {{index .Mounts 0 | json}}",
     'daemon off; {"Type":"volume","Name":"data","Source":"/var/lib/v/data/_data",'
     '"Destination":"/data","RW":true}'),
    ("{{slice .Name 1}} {{slice .Args 0 1}}", "web [-g]"),
    ('{{print "a" 1 2 "b"}} {{println 1 "x"}}', "a1 2b 1 x\n"),
    ("{{html \"<a href='x'>\"}} {{urlquery \"a b&c\"}} {{js \"it's\"}}",
     "&lt;a href=&#39;x&#39;&gt; a+b%26c it\\'s"),
    ('{{pad "x" 2 1}}|{{pad "" 2 1}}|{{truncate .Name 2}}|{{truncate "ab" 5}}',
     "  x ||/w|ab"),
    ('{{split "a,b,,c" ","}} {{join (split "a-b" "-") "+"}}', "[a b  c] a+b"),
    ("{{title \"hello docker world\"}}", "Hello Docker World"),
    ("{{`raw \\n`}} {{\"tab\\tq\\\"\"}} {{'a'}} {{0x1F}} {{1e3}} {{-2}} {{true}}",
     'raw \\n tab\tq" 97 31 1000 -2 true'),
    ("{{/* a comment */}}x{{- /* trimmed */ -}} y", "xy"),
    ("a  \n {{- .Name -}} \n  b", "a/webb"),
    ("{{.Missing}} {{.Missing.Deeper}} {{.State.Health}}",
     "<no value> <no value> <no value>"),
    ("{{json .Missing}} {{json .State.Health}}", "null null"),
    ("{{lt 1 2}} {{le 2 2}} {{gt \"b\" \"a\"}} {{ge 1 2}} {{ne .Name \"/web\"}}",
     "true true true false false"),
    ("{{eq .State.Health nil}}", "true"),
])
def test_go_template_language(template: str, expected: str) -> None:
    assert render(template) == expected


def test_numbers_print_as_go_prints_them() -> None:
    data = {"big": 4260000.0, "small": 0.00001, "whole": 12.0, "frac": 1.5, "int": 4260000,
            "neg": -3.25}
    assert render("{{.big}} {{.small}} {{.whole}} {{.frac}} {{.int}} {{.neg}}", data) == \
        "4.26e+06 1e-05 12 1.5 4260000 -3.25"
    assert render("{{json .}}", {"f": 2.0, "g": 0.5}) == '{"f":2,"g":0.5}'


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Name", "template: :1: unclosed action"),
    ("{{nope .Name}}", 'template: :1: function "nope" not defined'),
    ("{{if .Name}}x", "template: :1: unexpected EOF"),
    ("x{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ('{{"open}}', "template: :1: unterminated quoted string"),
    ("{{.Name | \"x\"}}", "template: :1: non executable command in pipeline stage 2"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ('{{template "x"}}', "template: :1: {{template}} is not supported by lamina"),
    ("{{.Name !}}", "template: :1: bad character U+0021 '!'"),
    ("{{}}", "template: :1: missing value for command"),
    ("{{if}}{{end}}", "template: :1: missing value for if"),
    ("\n\n{{nope}}", 'template: :3: function "nope" not defined'),
    ("{{/* open", "template: :1: unclosed comment"),
])
def test_parse_errors_are_one_line_in_gos_words(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        t.parse(template)
    assert str(err.value) == message


@pytest.mark.parametrize(("template", "message"), [
    ("{{index .Args 5}}",
     'template: :1:2: executing "" at <index .Args 5>: error calling index: index out of '
     "range: 5"),
    ("{{.Name.First}}",
     'template: :1:2: executing "" at <.Name.First>: can\'t evaluate field First in type '
     "string"),
    ("{{lower .State}}",
     'template: :1:2: executing "" at <lower .State>: wrong type for value; expected '
     "string; got map[string]interface {}"),
    ("{{range .Name}}{{end}}",
     'template: :1:8: executing "" at <.Name>: range can\'t iterate over /web'),
    ("{{eq .Name 1}}",
     'template: :1:2: executing "" at <eq .Name 1>: error calling eq: incompatible types '
     "for comparison"),
    ("{{len .State.Pid}}",
     'template: :1:2: executing "" at <len .State.Pid>: error calling len: len of type int'),
    ("x\n  {{$nope}}", 'template: :2:4: executing "" at <$nope>: undefined variable: $nope'),
    ('{{join .Args}}',
     'template: :1:2: executing "" at <join .Args>: wrong number of args for join: want 2 '
     "got 1"),
    ('{{.Name "x"}}',
     'template: :1:2: executing "" at <.Name>: Name is not a method but has arguments'),
    ('{{index .Config.Labels "com.example.vendor" "x"}}',
     'template: :1:2: executing "" at <index .Config.Labels...>: error calling index: '
     "cannot index slice/array with type string"),
])
def test_execution_errors_name_the_action(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(template)
    assert str(err.value) == message


# --- rows, tables and the tabwriter --------------------------------------------------------


class Box(Row):
    FIELDS = ("ID", "Names", "Status")
    METHODS = ("Label",)
    TYPE = "*formatter.ContainerContext"
    HEADERS = {"ID": "CONTAINER ID", "Names": "NAMES", "Status": "STATUS"}

    def __init__(self, ident: str, name: str, status: str,
                 labels: dict[str, str] | None = None) -> None:
        self.ident, self.name, self.status, self.labels = ident, name, status, labels or {}

    def ID(self) -> str:  # noqa: N802
        return self.ident

    def Names(self) -> str:  # noqa: N802
        return self.name

    def Status(self) -> str:  # noqa: N802
        return self.status

    def Label(self, name: str) -> str:  # noqa: N802
        return self.labels.get(name, "")


BOXES = [Box("4c01db0b339c", "webserver", "Up 2 hours", {"com.example.app-name": "shop"}),
         Box("d7886598dbe2", "a-much-longer-name", "Exited (0) 3 minutes ago")]


def test_table_heads_and_aligns_as_docker() -> None:
    out = t.format_rows("table {{.ID}}\\t{{.Names}}\\t{{.Status}}", BOXES, Box.HEADERS)
    assert out == (
        "CONTAINER ID   NAMES                STATUS\n"
        "4c01db0b339c   webserver            Up 2 hours\n"
        "d7886598dbe2   a-much-longer-name   Exited (0) 3 minutes ago\n")


def test_table_with_no_rows_prints_the_heads_and_a_plain_template_nothing() -> None:
    assert t.format_rows("table {{.ID}}\t{{.Names}}", [], Box.HEADERS) == \
        "CONTAINER ID   NAMES\n"
    assert t.format_rows("{{.ID}}", [], Box.HEADERS) == ""


def test_columns_are_at_least_ten_wide_and_the_last_is_not_padded() -> None:
    out = t.format_rows("table {{.Names}}\\t{{.ID}}", [Box("x", "a", "s")], Box.HEADERS)
    assert out == "NAMES     CONTAINER ID\na         x\n"


def test_label_heads_its_column_with_the_keys_last_part() -> None:
    out = t.format_rows('table {{.Names}}\\t{{.Label "com.example.app-name"}}', BOXES,
                        Box.HEADERS)
    assert out.splitlines() == ["NAMES                app name", "webserver            shop",
                                "a-much-longer-name   "]  # a cell before a tab is padded


def test_header_functions_keep_the_heads_and_json_gives_every_field() -> None:
    out = t.format_rows("table {{lower .Names}}\\t{{json .Status}}", BOXES[:1], Box.HEADERS)
    assert out.splitlines() == ["NAMES       STATUS", 'webserver   "Up 2 hours"']
    assert t.format_rows("{{json .}}", BOXES[:1], Box.HEADERS) == \
        '{"ID":"4c01db0b339c","Names":"webserver","Status":"Up 2 hours"}\n'


def test_a_plain_template_gets_no_heads_and_tabs_unaligned() -> None:
    assert t.format_rows("{{.ID}}: {{.Names}}\\t!", BOXES, Box.HEADERS) == \
        "4c01db0b339c: webserver\t!\nd7886598dbe2: a-much-longer-name\t!\n"


def test_a_field_the_row_has_not_is_an_error_naming_its_type() -> None:
    with pytest.raises(TemplateError) as err:
        t.format_rows("{{.Nope}}", BOXES, Box.HEADERS)
    assert str(err.value) == ('template parsing error: template: :1:2: executing "" at '
                              "<.Nope>: can't evaluate field Nope in type "
                              "*formatter.ContainerContext")
    with pytest.raises(TemplateError, match="wrong number of args for Label: want 1 got 0"):
        t.format_rows("{{.Label}}", BOXES, Box.HEADERS)


def test_tabwriter_blocks_follow_go() -> None:
    # a line with fewer cells ends a column block: widths are per block, as Go's
    assert t.tabwrite("aaaaaaaaaaaaaa\tb\nc\n\td\te\n") == \
        "aaaaaaaaaaaaaa   b\nc\n          d         e\n"


def test_inspect_format_runs_on_each_document_without_table_or_tab_rules() -> None:
    docs = [CONTAINER, {**CONTAINER, "Name": "/db"}]
    assert t.format_each("{{.Name}}\\t{{.State.Status}}", docs) == \
        "/web\\trunning\n/db\\trunning\n"
    with pytest.raises(TemplateError, match="^template parsing error: template: :1: "):
        t.format_each("{{.Name", docs)
