"""Configuration: the schema of the analyzer's YAML, the built-in rules, loading and checking files."""

from ragotel.analyzer.config.model import DEFAULT_CONFIG_YAML, Config, ConfigError, check_config, load_config

__all__ = ["DEFAULT_CONFIG_YAML", "Config", "ConfigError", "check_config", "load_config"]
