"""docs/ stays true: configuration.md lists exactly the code's variables and keys; links and the README hold."""

from __future__ import annotations

import ast
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import pytest
from pydantic import BaseModel

from ragotel.analyzer.config import hooks, specs
from ragotel.analyzer.config.model import Config

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
# The documentation set the project promises (issue: docs/ for quickstart, concepts, ..., performance).
REQUIRED_DOCS = (
    "quickstart.md",
    "concepts.md",
    "semantic-conventions.md",
    "configuration.md",
    "analyzer.md",
    "health.md",
    "deployment.md",
    "performance.md",
)
_ENV_NAME = re.compile(r"(?:RAGOTEL|OTEL)_[A-Z0-9_]+")
_APP_ENV_NAME = re.compile(r"(?:RAGAPP|OPENAI)_[A-Z0-9_]+")
_ROW_KEY = re.compile(r"^\|\s*`([^`]+)`\s*\|", re.MULTILINE)


def _string_constants(paths: list[Path], pattern: re.Pattern[str]) -> set[str]:
    """Every string literal in the given Python files that is entirely a variable name of ``pattern``."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.fullmatch(node.value):
                found.add(node.value)
    return found


def _section(text: str, heading: str) -> str:
    """The text under the ``## heading`` up to the next ``## `` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _first_table_keys(section: str) -> list[str]:
    table = section.split("\n\n| ", 1)[1].split("\n\n", 1)[0]
    return _ROW_KEY.findall("| " + table)


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return members
            annotation = members[0]
        else:
            return annotation


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _keys(model: type[BaseModel], prefix: str, out: set[str]) -> None:
    """Key paths of ``model``: leaves, lists of models and unions of models; plain sub-sections only recursed."""
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        annotation = _unwrap(field.annotation)
        if _is_model(annotation):
            _keys(annotation, path + ".", out)
            continue
        out.add(path)
        members = annotation if isinstance(annotation, list) else [annotation]
        for member in members:
            member = _unwrap(member)
            if _is_model(member):
                _keys(member, path + ".", out)
            elif typing.get_origin(member) is list:
                inner = _unwrap(typing.get_args(member)[0])
                for item in inner if isinstance(inner, list) else [inner]:
                    if _is_model(item):
                        _keys(item, path + "[].", out)


def _analyzer_keys() -> set[str]:
    keys: set[str] = set()
    _keys(Config, "", keys)
    # Config holds rules/channels/recovery as plain lists; the alerting side validates them with these models.
    keys -= {"rules", "channels", "recovery"}
    _keys(specs.RuleSpec, "rules[].", keys)
    for channel in typing.get_args(_unwrap(specs.ChannelSpec)) or _unwrap(specs.ChannelSpec):
        _keys(channel, "channels[].", keys)
    _keys(hooks.RecoverySpec, "recovery[].", keys)
    return keys


def test_every_sdk_environment_variable_is_documented() -> None:
    """The SDK variable table equals the RAGOTEL_*/OTEL_* names the code of src/ragotel reads."""
    in_code = _string_constants(sorted((ROOT / "src" / "ragotel").rglob("*.py")), _ENV_NAME)
    documented = _first_table_keys(_section(CONFIGURATION.read_text(), "SDK: environment variables"))
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    assert set(documented) == in_code, {
        "undocumented": sorted(in_code - set(documented)),
        "not in the code": sorted(set(documented) - in_code),
    }


def test_every_analyzer_config_key_is_documented() -> None:
    """The analyzer key tables list exactly the keys of the configuration models (defaults, rules, channels...)."""
    section = _section(CONFIGURATION.read_text(), "Analyzer: configuration keys")
    documented = _ROW_KEY.findall(section)
    assert len(documented) == len(set(documented)), "a key is listed twice"
    expected = _analyzer_keys()
    assert set(documented) == expected, {
        "undocumented": sorted(expected - set(documented)),
        "not in the code": sorted(set(documented) - expected),
    }


def test_documented_analyzer_defaults_match_the_built_in_configuration() -> None:
    """Every default in the daemon table is the value Config() holds (durations and sizes parsed)."""
    from ragotel.analyzer.vocabulary import parse_duration, parse_size

    config = Config()
    section = _section(CONFIGURATION.read_text(), "Analyzer: configuration keys")
    daemon = section.split("### Daemon", 1)[1].split("###", 1)[0]
    for key, default in re.findall(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|", daemon, re.MULTILINE):
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        text = default.strip("`")
        if text == "none":
            assert value is None, key
        elif isinstance(value, bool):
            assert text == str(value).lower(), key
        elif isinstance(value, int):
            assert value == parse_size(text), key
        elif isinstance(value, float):
            assert value == pytest.approx(parse_duration(text)), key
        elif isinstance(value, dict):
            assert value == {}, key
        elif isinstance(value, list | tuple):
            assert [str(v) for v in value] == [v.strip() for v in text.strip("[]").split(",")], key
        else:
            assert str(value) == text, key


def test_example_app_variables_are_documented() -> None:
    """The example app's variable table equals the RAGAPP_*/OPENAI_* names its code reads."""
    in_code = _string_constants(sorted((ROOT / "examples" / "langchain_app").glob("*.py")), _APP_ENV_NAME)
    documented = _first_table_keys(_section(CONFIGURATION.read_text(), "Example app (`examples/langchain_app`)"))
    assert set(documented) == in_code


def test_required_docs_exist_and_relative_links_resolve() -> None:
    """Every promised page exists, and every relative link in docs/, collector-config/ and README resolves."""
    for name in REQUIRED_DOCS:
        assert (DOCS / name).is_file(), f"docs/{name} is missing"
    pages = [*DOCS.glob("*.md"), ROOT / "README.md", ROOT / "collector-config" / "README.md"]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: broken link {target}"


def test_readme_starts_with_the_two_fresh_machine_commands() -> None:
    """The README opens with the demo command and the test command, and the demo's extra is the one it installs."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```(?:bash|sh)?\n(.*?)\n```", text, re.S)
    assert block is not None
    commands = block.group(1).splitlines()
    assert len(commands) == 2, commands
    assert commands[0] == "pip install -e '.[example]' && ragotel demo"
    assert text.index(block.group(0)) < text.index("\n## "), "the commands come before any section"
