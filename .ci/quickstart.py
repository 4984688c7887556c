"""Print the README's quick-start command number N (1: main job, 2: tests), for .ci/run."""

import re
import sys
from pathlib import Path


def quickstart_commands(readme_text):
    section = readme_text.split("Quick start\n===========", 1)[1].split("\n=====", 1)[0]
    return re.findall(r"^   \$ (.+)$", section, flags=re.MULTILINE)


if __name__ == "__main__":
    commands = quickstart_commands(Path(__file__).resolve().parents[1].joinpath("README.rst").read_text())
    if len(commands) != 2:
        sys.exit(f"README.rst's quick start must hold exactly two commands, found {len(commands)}")
    print(commands[int(sys.argv[1]) - 1])
