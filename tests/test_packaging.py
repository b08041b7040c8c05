"""setup.cfg's floors are what CI's second environment installs (scripts/oldest-constraints.txt), and they install."""

import configparser
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


REPOSITORY = Path(__file__).resolve().parents[1]
# the libraries whose oldest admitted release CI tests (torch is tested at 2.13 only: see docs/diffusers_compatibility.md#versions)
PINNED = {"diffusers", "transformers", "huggingface-hub", "accelerate", "safetensors", "peft", "av"}


def floors() -> dict[str, Version]:
    setup = configparser.ConfigParser()
    setup.read(REPOSITORY / "setup.cfg")
    lines = setup["options"]["install_requires"].splitlines() + setup["options.extras_require"]["test"].splitlines()
    result = {}
    for line in filter(None, (line.strip() for line in lines)):
        requirement = Requirement(line)
        for specifier in requirement.specifier:
            if specifier.operator == ">=":
                result[canonicalize_name(requirement.name)] = Version(specifier.version)
    return result


def pins() -> dict[str, Version]:
    result = {}
    for line in (REPOSITORY / "scripts" / "oldest-constraints.txt").read_text().splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)==([0-9][0-9A-Za-z.]*)\s*", line)
        if match:
            result[canonicalize_name(match.group(1))] = Version(match.group(2))
    return result


def test_oldest_constraints_pin_the_floors():
    admitted, pinned = floors(), pins()
    assert set(pinned) == PINNED
    for name, version in pinned.items():
        assert admitted[name] == version, f"setup.cfg admits {name}>={admitted[name]}, CI tests {name}=={version}"


def test_diffusers_range_spans_the_tested_releases():
    setup = configparser.ConfigParser()
    setup.read(REPOSITORY / "setup.cfg")
    (diffusers,) = [
        Requirement(line)
        for line in setup["options"]["install_requires"].splitlines()
        if line.strip().startswith("diffusers")
    ]
    assert Version("0.38.0") in diffusers.specifier and Version("0.42.1") in diffusers.specifier
    assert Version("0.37.1") not in diffusers.specifier and Version("0.43.0") not in diffusers.specifier
