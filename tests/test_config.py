"""``load_settings``: arguments > environment > lumina.toml > profile defaults, and
ConfigErrors that name the key, the value, where it came from and what is allowed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lumina_lab.config import PROFILES, Settings, config_file, load_settings
from lumina_lab.errors import ConfigError, LuminaError


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No LUMINA_* variables from the real environment, cwd is empty, LUMINA_HOME is private."""
    for name in list(os.environ):
        if name.upper().startswith("LUMINA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUMINA_HOME", str(tmp_path / "home"))


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class TestDefaults:
    def test_default_profile_is_dev(self):
        assert load_settings().profile == "dev"

    def test_defaults_of_the_event_spine(self):
        ev = load_settings().events

        assert ev.queue_size == 10_000
        assert ev.overflow == "block"
        assert ev.handler_retries == 3
        assert ev.flush_interval_s == 0.2
        assert ev.batch_size == 5_000
        assert ev.fsync is True

    def test_source_is_unset_by_default(self):
        assert load_settings().source is None

    def test_returns_settings(self):
        assert isinstance(load_settings(), Settings)

    def test_home_comes_from_lumina_home(self, tmp_path):
        assert load_settings().home == tmp_path / "home"

    def test_home_defaults_to_dot_lumina_in_the_user_home(self, monkeypatch, tmp_path):
        monkeypatch.delenv("LUMINA_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "user"))

        assert load_settings().home == tmp_path / "user" / ".lumina"

    def test_home_expands_user_and_environment_variables(self, monkeypatch, tmp_path):
        monkeypatch.setenv("HOME", str(tmp_path / "user"))
        monkeypatch.setenv("DATA_ROOT", str(tmp_path / "data"))

        assert load_settings(home="~/lab").home == tmp_path / "user" / "lab"
        assert load_settings(home="$DATA_ROOT/lab").home == tmp_path / "data" / "lab"

    def test_events_dir_is_under_home(self, tmp_path):
        assert load_settings().events_dir == tmp_path / "home" / "events"

    def test_no_config_file_applies_in_a_clean_environment(self):
        assert config_file() is None


class TestProfiles:
    @pytest.mark.parametrize(
        ("profile", "store", "log_level"),
        [("dev", "file", "INFO"), ("test", "memory", "WARNING"), ("prod", "file", "WARNING")],
    )
    def test_profile_fills_unset_settings(self, profile, store, log_level):
        s = load_settings(profile=profile)

        assert (s.profile, s.events.store, s.log_level) == (profile, store, log_level)

    def test_profiles_table_matches_what_load_settings_applies(self):
        for profile, values in PROFILES.items():
            s = load_settings(profile=profile)
            assert s.events.store == values["events.store"]
            assert s.log_level == values["log_level"]

    def test_explicit_argument_wins_over_profile(self):
        s = load_settings(profile="test", events={"store": "file"}, log_level="DEBUG")

        assert (s.events.store, s.log_level) == ("file", "DEBUG")

    def test_environment_variable_wins_over_profile(self, monkeypatch):
        monkeypatch.setenv("LUMINA_PROFILE", "test")
        monkeypatch.setenv("LUMINA_EVENTS__STORE", "file")

        s = load_settings()

        assert (s.profile, s.events.store) == ("test", "file")

    def test_toml_setting_wins_over_profile(self, tmp_path):
        write_toml(tmp_path / "lumina.toml", 'profile = "prod"\n[events]\nstore = "memory"\n')

        s = load_settings()

        assert (s.profile, s.events.store) == ("prod", "memory")


class TestEnvironment:
    def test_nested_key_with_double_underscore(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__STORE", "memory")

        assert load_settings().events.store == "memory"

    def test_numbers_are_parsed_from_strings(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__QUEUE_SIZE", "25")

        assert load_settings().events.queue_size == 25

    def test_lumina_home(self, monkeypatch, tmp_path):
        monkeypatch.setenv("LUMINA_HOME", str(tmp_path / "elsewhere"))

        assert load_settings().home == tmp_path / "elsewhere"

    def test_lumina_profile(self, monkeypatch):
        monkeypatch.setenv("LUMINA_PROFILE", "test")

        s = load_settings()

        assert (s.profile, s.events.store) == ("test", "memory")

    def test_argument_wins_over_environment(self, monkeypatch):
        monkeypatch.setenv("LUMINA_PROFILE", "test")

        assert load_settings(profile="prod").profile == "prod"

    def test_nested_env_var_keeps_other_nested_defaults(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__OVERFLOW", "drop_oldest")

        ev = load_settings().events

        assert (ev.overflow, ev.queue_size) == ("drop_oldest", 10_000)


class TestTomlFile:
    def test_read_from_the_working_directory(self, tmp_path):
        write_toml(tmp_path / "lumina.toml", 'profile = "test"\n')

        assert load_settings().profile == "test"

    def test_keys_may_sit_under_a_lumina_table(self, tmp_path):
        write_toml(
            tmp_path / "lumina.toml",
            '[lumina]\nprofile = "prod"\nsource = "lab-1"\n[lumina.events]\nqueue_size = 7\n',
        )

        s = load_settings()

        assert (s.profile, s.source, s.events.queue_size) == ("prod", "lab-1", 7)

    def test_lumina_config_points_to_the_file(self, monkeypatch, tmp_path):
        cfg = write_toml(tmp_path / "conf" / "custom.toml", "[events]\nqueue_size = 42\n")
        monkeypatch.setenv("LUMINA_CONFIG", str(cfg))

        assert config_file() == cfg
        assert load_settings().events.queue_size == 42

    def test_lumina_config_takes_precedence_over_the_working_directory(self, monkeypatch, tmp_path):
        write_toml(tmp_path / "lumina.toml", 'profile = "prod"\n')
        cfg = write_toml(tmp_path / "conf" / "lumina.toml", 'profile = "test"\n')
        monkeypatch.setenv("LUMINA_CONFIG", str(cfg))

        assert load_settings().profile == "test"

    def test_falls_back_to_lumina_home(self, tmp_path):
        write_toml(tmp_path / "home" / "lumina.toml", 'profile = "test"\n')

        assert load_settings().profile == "test"

    def test_working_directory_wins_over_lumina_home(self, tmp_path):
        write_toml(tmp_path / "home" / "lumina.toml", 'profile = "test"\n')
        write_toml(tmp_path / "lumina.toml", 'profile = "prod"\n')

        assert load_settings().profile == "prod"

    def test_environment_wins_over_toml(self, monkeypatch, tmp_path):
        write_toml(tmp_path / "lumina.toml", '[events]\nstore = "file"\n')
        monkeypatch.setenv("LUMINA_EVENTS__STORE", "memory")

        assert load_settings().events.store == "memory"

    def test_environment_and_toml_merge_nested_keys(self, monkeypatch, tmp_path):
        write_toml(tmp_path / "lumina.toml", "[events]\nqueue_size = 5\n")
        monkeypatch.setenv("LUMINA_EVENTS__OVERFLOW", "drop_oldest")

        ev = load_settings().events

        assert (ev.queue_size, ev.overflow) == (5, "drop_oldest")

    def test_argument_wins_over_toml(self, tmp_path):
        write_toml(tmp_path / "lumina.toml", 'profile = "prod"\n')

        assert load_settings(profile="dev").profile == "dev"


class TestInvalidValues:
    def test_invalid_literal_from_environment(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__STORE", "sqlite")

        with pytest.raises(ConfigError) as info:
            load_settings()

        msg = str(info.value)
        assert "events.store" in msg
        assert "'sqlite'" in msg
        assert "environment variable LUMINA_EVENTS__STORE" in msg
        assert "'file'" in msg
        assert "'memory'" in msg

    def test_invalid_literal_attributes(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__STORE", "sqlite")

        with pytest.raises(ConfigError) as info:
            load_settings()

        err = info.value
        assert err.key == "events.store"
        assert err.value == "sqlite"
        assert "'file'" in err.allowed
        assert "'memory'" in err.allowed

    def test_hint_says_what_to_set(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__STORE", "sqlite")

        with pytest.raises(ConfigError) as info:
            load_settings()

        assert info.value.hint is not None
        assert "events.store" in info.value.hint
        assert "\n  fix: " in str(info.value)

    def test_invalid_literal_from_argument_says_argument(self):
        with pytest.raises(ConfigError, match=r"invalid setting profile = 'staging' \(from argument\)") as info:
            load_settings(profile="staging")

        assert "'dev'" in info.value.allowed

    def test_invalid_literal_from_toml_names_the_file(self, tmp_path):
        path = write_toml(tmp_path / "lumina.toml", '[events]\nstore = "disk"\n')

        with pytest.raises(ConfigError) as info:
            load_settings()

        assert str(path) in str(info.value)
        assert (info.value.key, info.value.value) == ("events.store", "disk")

    def test_invalid_value_inside_json_env_var_names_that_variable(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS", '{"store": "sqlite"}')

        with pytest.raises(ConfigError) as info:
            load_settings()

        assert "environment variable LUMINA_EVENTS" in str(info.value)

    @pytest.mark.parametrize(
        ("events", "key", "bound"),
        [
            ({"queue_size": 0}, "events.queue_size", ">= 1"),
            ({"handler_retries": 21}, "events.handler_retries", "<= 20"),
            ({"flush_interval_s": 0}, "events.flush_interval_s", "> 0.0"),
            ({"batch_size": 2_000_000}, "events.batch_size", "<= 1000000"),
        ],
    )
    def test_out_of_range_number_names_key_and_bound(self, events, key, bound):
        with pytest.raises(ConfigError) as info:
            load_settings(events=events)

        err = info.value
        assert err.key == key
        assert err.value == next(iter(events.values()))
        assert err.allowed == f"a number {bound}"
        assert key in str(err)

    def test_out_of_range_number_from_environment(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__QUEUE_SIZE", "0")

        with pytest.raises(ConfigError, match="environment variable LUMINA_EVENTS__QUEUE_SIZE") as info:
            load_settings()

        assert info.value.key == "events.queue_size"

    def test_wrong_type_names_the_expected_type(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__QUEUE_SIZE", "lots")

        with pytest.raises(ConfigError) as info:
            load_settings()

        assert info.value.value == "lots"
        assert "int" in info.value.allowed

    def test_config_error_is_a_lumina_error_and_value_error(self):
        with pytest.raises(ConfigError) as info:
            load_settings(profile="staging")

        assert isinstance(info.value, LuminaError)
        assert isinstance(info.value, ValueError)


class TestUnknownKeys:
    def test_unknown_top_level_key_lists_known_keys(self):
        with pytest.raises(ConfigError, match=r"unknown setting 'colour' \(from argument\)") as info:
            load_settings(colour="red")

        err = info.value
        assert err.key == "colour"
        assert err.value == "red"
        assert err.allowed == "budgets, events, home, log_level, memory, observability, profile, providers, routing, source"
        assert "budgets, events, home, log_level, memory, observability, profile, providers, routing, source" in str(err)

    def test_unknown_nested_key_lists_the_keys_of_that_section(self):
        with pytest.raises(ConfigError) as info:
            load_settings(events={"queue_sise": 5})

        err = info.value
        assert err.key == "events.queue_sise"
        assert "queue_size" in err.allowed
        assert "home" not in err.allowed

    def test_misspelt_nested_environment_variable_is_reported(self, monkeypatch):
        monkeypatch.setenv("LUMINA_EVENTS__QUEUE_SISE", "5")

        with pytest.raises(ConfigError, match="environment variable LUMINA_EVENTS__QUEUE_SISE") as info:
            load_settings()

        assert info.value.key == "events.queue_sise"

    def test_unknown_key_in_toml_names_the_file(self, tmp_path):
        path = write_toml(tmp_path / "lumina.toml", 'colour = "red"\n')

        with pytest.raises(ConfigError, match="unknown setting 'colour'") as info:
            load_settings()

        assert str(path) in str(info.value)


class TestBadFiles:
    def test_malformed_toml_names_the_file(self, tmp_path):
        path = write_toml(tmp_path / "lumina.toml", "profile = \n")

        with pytest.raises(ConfigError, match="is not valid TOML") as info:
            load_settings()

        assert str(path) in str(info.value)
        assert info.value.key == str(path)

    def test_malformed_toml_message_gives_the_position(self, tmp_path):
        write_toml(tmp_path / "lumina.toml", 'profile = "dev"\nsource = \n')

        with pytest.raises(ConfigError, match=r"line 2"):
            load_settings()

    def test_lumina_config_pointing_to_a_missing_file(self, monkeypatch, tmp_path):
        missing = tmp_path / "nope" / "lumina.toml"
        monkeypatch.setenv("LUMINA_CONFIG", str(missing))

        with pytest.raises(ConfigError) as info:
            load_settings()

        err = info.value
        assert str(missing) in str(err)
        assert err.key == "LUMINA_CONFIG"
        assert err.value == str(missing)

    def test_lumina_config_pointing_to_a_directory(self, monkeypatch, tmp_path):
        monkeypatch.setenv("LUMINA_CONFIG", str(tmp_path))

        with pytest.raises(ConfigError, match="not a file"):
            load_settings()
