"""Configuration: the schema of the analyzer's YAML, the built-in rules, loading and checking files."""

from ragotel.analyzer.config.loading import DEFAULT_CONFIG_YAML, ConfigError, check_config, load_config
from ragotel.analyzer.config.model import Config

__all__ = ["DEFAULT_CONFIG_YAML", "Config", "ConfigError", "check_config", "load_config"]
