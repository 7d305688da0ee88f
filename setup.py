"""Package layout pyproject.toml cannot say: the example app and its corpus ship inside the wheel.

``examples/langchain_app`` (the readable source) is packaged as ``ragotel._example`` and ``docs/*.md`` (the corpus
it indexes) as ``ragotel._example.docs``, so ``pip install 'ragotel[example]' && ragotel demo`` works outside a
checkout. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "ragotel._example", "ragotel._example.docs"],
    package_dir={"": "src", "ragotel._example": "examples/langchain_app", "ragotel._example.docs": "docs"},
    package_data={
        "ragotel": ["py.typed"],
        "ragotel.analyzer.api": ["static/*.*", "static/vendor/*"],  # the web page and its vendored libraries
        "ragotel._example.docs": ["*.md"],
    },
)
