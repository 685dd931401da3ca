"""The set-up `make test` does: one list of Debian packages in scripts/system-deps.sh, installed only when missing."""

import re
import subprocess
from pathlib import Path

from digitscan.synthetic.photos import FONT_PACKAGES

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "system-deps.sh"
FAKE = "digitscan-no-such-package"


def script_packages() -> list[str]:
    """The names in the script's PACKAGES=( ... ) array, read from its text (comments dropped)."""
    body = re.search(r"^PACKAGES=\((.*?)^\)", SCRIPT.read_text(), re.MULTILINE | re.DOTALL).group(1)
    return [name for line in body.splitlines() for name in line.split("#")[0].split()]


def system_deps(*args: str, extra: str = "") -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DIGITSCAN_EXTRA_PACKAGES": extra}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60)


def test_every_font_the_photos_use_is_in_the_one_package_list():
    packages = script_packages()
    assert not set(FONT_PACKAGES) - set(packages)
    assert {"chromium", "chromium-driver", "dataset-fashion-mnist"} <= set(packages)
    assert len(packages) == len(set(packages))


def test_list_prints_the_names_the_script_holds():
    result = system_deps("--list")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.split() == script_packages()


def test_a_missing_package_is_one_line_naming_the_command_to_run():
    result = system_deps("--check", extra=FAKE)
    assert result.returncode == 1 and result.stdout == ""
    line, = result.stderr.splitlines()
    assert line.startswith("digitscan: missing Debian packages; run: ")
    assert "apt-get install -y" in line and line.endswith(f" {FAKE}")


def test_an_unknown_option_is_a_usage_error():
    result = system_deps("--install-everything")
    assert result.returncode == 2 and result.stderr.startswith("usage: ")
