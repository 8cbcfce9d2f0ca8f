"""Configuration: the keys and defaults of config.toml, env overrides, and errors naming the key."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

from wfed.config import CONFIG_ENV, DATABASE_URL_ENV, Config, load_config, parse_config
from wfed.errors import ConfigError, WfedError
from wfed.store.database import create_engine

DESIGN_EXAMPLE = """\
[database]
url = "sqlite+aiosqlite:///wfed.db"   # or mysql+asyncmy://user@host/db, postgresql+asyncpg://…
password_file = ""                   # optional: read the password from a file (systemd credentials)

[daemon]
id = ""                  # default host:pid
queues = ["default"]
max_workflows = 32       # concurrent workflows per daemon
poll_interval = 1.0      # seconds
control_interval = 1.0   # how often pause/stop requests are read
lease = 30.0             # seconds
shutdown_grace = 30.0

[steps]
modules = ["wfed.examples"]

[log]
level = "info"
format = "auto"          # json | console | auto

[metrics]
listen = ""              # e.g. "127.0.0.1:9464"
"""

FULL = """\
[database]
url = "mysql+asyncmy://wfed@db.example/wfed"
password_file = "/run/credentials/wfed.service/db"

[daemon]
id = "ops1"
queues = ["default", "maintenance"]
max_workflows = 8
poll_interval = 0.5
control_interval = 0.25
lease = 45.5
shutdown_grace = 10.0

[steps]
modules = ["wfed.examples", "myorg.runbooks"]

[log]
level = "debug"
format = "json"

[metrics]
listen = "127.0.0.1:9464"
"""


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's WFED_* variables out of every test."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)


def write(directory: Path, text: str, name: str = "config.toml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def assert_defaults(config: Config) -> None:
    assert config.database.url == "sqlite+aiosqlite:///wfed.db"
    assert config.database.password_file == ""
    assert config.database_password() is None
    assert config.daemon.id == ""
    assert config.daemon.queues == ["default"]
    assert config.daemon.max_workflows == 32
    assert config.daemon.poll_interval == 1.0
    assert config.daemon.control_interval == 1.0
    assert config.daemon.lease == 30.0
    assert config.daemon.shutdown_grace == 30.0
    assert config.steps.modules == ["wfed.examples"]
    assert config.log.level == "info"
    assert config.log.format == "auto"
    assert config.metrics.listen == ""


def test_defaults_without_a_file() -> None:
    """With no path and no WFED_CONFIG, every key has its default (as in config.toml)."""
    assert_defaults(load_config())


def test_no_implicit_config_file_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config.toml in the working directory is not read unless asked for."""
    write(tmp_path, "[daemon]\nmax_workflows = 2\n")
    monkeypatch.chdir(tmp_path)
    assert load_config().daemon.max_workflows == 32


def test_design_example_equals_defaults(tmp_path: Path) -> None:
    """The example file above is valid and spells out the defaults."""
    assert_defaults(load_config(write(tmp_path, DESIGN_EXAMPLE)))


def test_empty_file_and_empty_sections_are_defaults(tmp_path: Path) -> None:
    """An empty file, or sections with no keys, give the defaults."""
    assert_defaults(load_config(write(tmp_path, "")))
    sections = "[database]\n[daemon]\n[steps]\n[log]\n[metrics]\n"
    assert_defaults(load_config(write(tmp_path, sections, "sections.toml")))


def test_full_valid_file(tmp_path: Path) -> None:
    """Every key of a full file is read with its type."""
    config = load_config(write(tmp_path, FULL))
    assert config.database.url == "mysql+asyncmy://wfed@db.example/wfed"
    assert config.database.password_file == "/run/credentials/wfed.service/db"
    assert config.daemon.id == "ops1"
    assert config.daemon.queues == ["default", "maintenance"]
    assert config.daemon.max_workflows == 8
    assert config.daemon.poll_interval == 0.5
    assert config.daemon.control_interval == 0.25
    assert config.daemon.lease == 45.5
    assert config.daemon.shutdown_grace == 10.0
    assert config.steps.modules == ["wfed.examples", "myorg.runbooks"]
    assert config.log.level == "debug"
    assert config.log.format == "json"
    assert config.metrics.listen == "127.0.0.1:9464"


@pytest.mark.parametrize(
    "key", ["poll_interval", "control_interval", "lease", "shutdown_grace"], ids=str
)
def test_int_accepted_for_seconds(tmp_path: Path, key: str) -> None:
    """`lease = 30` (a TOML integer) is accepted for a seconds key and read as a float."""
    config = load_config(write(tmp_path, f"[daemon]\n{key} = 3\n"))
    value = getattr(config.daemon, key)
    assert value == 3.0
    assert type(value) is float


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("database", "user"),
        ("daemon", "workers"),
        ("steps", "paths"),
        ("log", "file"),
        ("metrics", "port"),
    ],
)
def test_unknown_key_in_each_section(tmp_path: Path, section: str, key: str) -> None:
    """An unknown key inside any section is a ConfigError naming `[section] key`."""
    path = write(tmp_path, f'[{section}]\n{key} = "x"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    message = str(excinfo.value)
    assert f"[{section}] {key}" in message
    assert "unknown" in message
    assert str(path) in message


def test_unknown_section(tmp_path: Path) -> None:
    """An unknown top-level section is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"\[databse\].*unknown"):
        load_config(write(tmp_path, '[databse]\nurl = "sqlite+aiosqlite:///x.db"\n'))


def test_unknown_top_level_key(tmp_path: Path) -> None:
    """A key outside every section is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"\[debug\].*unknown"):
        load_config(write(tmp_path, "debug = true\n"))


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    """A section given as a plain value is a ConfigError naming the section."""
    with pytest.raises(ConfigError, match=r"\[daemon\].*table"):
        load_config(write(tmp_path, "daemon = 5\n"))


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("database", "url", '["sqlite+aiosqlite:///wfed.db"]'),
        ("database", "url", "5"),
        ("database", "password_file", "false"),
        ("daemon", "id", "5"),
        ("daemon", "queues", '"default"'),
        ("daemon", "queues", "[1, 2]"),
        ("daemon", "queues", "[]"),
        ("daemon", "max_workflows", '"32"'),
        ("daemon", "max_workflows", "true"),
        ("daemon", "max_workflows", "1.5"),
        ("daemon", "max_workflows", "0"),
        ("daemon", "poll_interval", "true"),
        ("daemon", "poll_interval", '"1.0"'),
        ("daemon", "poll_interval", "0"),
        ("daemon", "control_interval", "[1.0]"),
        ("daemon", "lease", '"30"'),
        ("daemon", "lease", "-1"),
        ("daemon", "lease", "86400.5"),
        ("daemon", "shutdown_grace", "-1.0"),
        ("steps", "modules", '"wfed.examples"'),
        ("steps", "modules", "[1]"),
        ("log", "level", '"verbose"'),
        ("log", "level", "1"),
        ("log", "format", '"xml"'),
        ("metrics", "listen", "9464"),
        ("metrics", "listen", '"127.0.0.1:99999"'),
        ("metrics", "listen", '"127.0.0.1:http"'),
        ("metrics", "listen", '"nonsense"'),
    ],
)
def test_wrong_type_or_value_names_the_key(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    """A value of the wrong type (or out of range) is a ConfigError naming `[section] key`."""
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, f"[{section}]\n{key} = {value}\n"))
    assert f"[{section}] {key}" in str(excinfo.value)


def test_parse_config_names_the_source() -> None:
    """parse_config() errors start with the source they were given."""
    with pytest.raises(ConfigError, match=r"^from-test: \[daemon\] max_workflows"):
        parse_config({"daemon": {"max_workflows": "many"}}, "from-test")


def test_bad_toml(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file."""
    path = write(tmp_path, "[daemon\nmax_workflows = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "config.toml"
    path.write_bytes(b'[daemon]\nid = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not valid TOML") as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_missing_file(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming it."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_unreadable_file(tmp_path: Path) -> None:
    """A config path that cannot be read (a directory) is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="cannot read") as excinfo:
        load_config(tmp_path)
    assert str(tmp_path) in str(excinfo.value)


def test_config_error_is_a_wfed_error() -> None:
    """ConfigError is a WfedError, so wfectl reports it as one line with exit code 1."""
    assert issubclass(ConfigError, WfedError)


def test_wfed_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WFED_CONFIG names the file when no path is given."""
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, "[daemon]\nmax_workflows = 3\n")))
    assert load_config().daemon.max_workflows == 3


def test_path_beats_wfed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit path wins over WFED_CONFIG."""
    monkeypatch.setenv(CONFIG_ENV, str(write(tmp_path, "[daemon]\nmax_workflows = 3\n", "a")))
    assert (
        load_config(write(tmp_path, "[daemon]\nmax_workflows = 4\n", "b")).daemon.max_workflows == 4
    )


def test_wfed_config_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WFED_CONFIG naming a missing file is a ConfigError, not a silent fallback to defaults."""
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match=r"gone\.toml"):
        load_config()


def test_empty_wfed_config_means_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty WFED_CONFIG is the same as unset."""
    monkeypatch.setenv(CONFIG_ENV, "")
    assert_defaults(load_config())


def test_wfed_database_url_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """WFED_DATABASE_URL replaces the default database URL."""
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+asyncpg://wfed@pg/wfed")
    assert load_config().database.url == "postgresql+asyncpg://wfed@pg/wfed"


def test_wfed_database_url_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WFED_DATABASE_URL replaces the file's url and keeps every other key."""
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql+asyncpg://wfed@pg/wfed")
    config = load_config(write(tmp_path, FULL))
    assert config.database.url == "postgresql+asyncpg://wfed@pg/wfed"
    assert config.database.password_file == "/run/credentials/wfed.service/db"
    assert config.daemon.max_workflows == 8


def test_empty_wfed_database_url_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty WFED_DATABASE_URL does not replace the configured URL."""
    monkeypatch.setenv(DATABASE_URL_ENV, "")
    assert load_config(write(tmp_path, FULL)).database.url.startswith("mysql+asyncmy://")


@pytest.mark.parametrize("content", ["s3cret\n", "s3cret\r\n", "s3cret", "s3cret\n\n"])
def test_password_file_read_and_stripped(tmp_path: Path, content: str) -> None:
    """The password is read from password_file without its trailing newline."""
    secret = tmp_path / "db-password"
    secret.write_text(content, encoding="utf-8", newline="")
    config = load_config(write(tmp_path, f'[database]\npassword_file = "{secret}"\n'))
    assert config.database_password() == "s3cret"


@pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8"])
def test_unreadable_password_file(tmp_path: Path, kind: str) -> None:
    """A password_file that cannot be read is a ConfigError naming `[database] password_file`."""
    secret = tmp_path / "db-password"
    if kind == "directory":
        secret.mkdir()
    elif kind == "not-utf8":
        secret.write_bytes(b"\xff\xfe\n")
    config = load_config(write(tmp_path, f'[database]\npassword_file = "{secret}"\n'))
    with pytest.raises(ConfigError, match=r"\[database\] password_file") as excinfo:
        config.database_password()
    assert str(secret) in str(excinfo.value)


def test_the_shipped_config_file_names_every_key_with_its_default() -> None:
    """config.toml (README: "lists every key with its default") loads to the built-in
    defaults, and names every key of every section (but the webhooks, shown commented:
    there are none by default)."""
    shipped = Path(__file__).resolve().parents[2] / "config.toml"
    assert load_config(str(shipped)).model_dump() == Config().model_dump()
    written = tomllib.loads(shipped.read_text(encoding="utf-8"))
    for section, fields in Config.model_fields.items():
        model = fields.annotation
        assert isinstance(model, type), section
        expected = set(model.model_fields) - {"webhooks"}
        assert set(written.get(section, {})) == expected, section


def test_a_password_file_for_sqlite_is_named_as_the_problem() -> None:
    """SQLite takes no password: a password_file beside an SQLite url is refused naming
    password_file, not as an invalid URL."""
    with pytest.raises(ConfigError, match=r"^\[database\] password_file: an SQLite database"):
        create_engine("sqlite+aiosqlite:///wfed.db", password="secret")
