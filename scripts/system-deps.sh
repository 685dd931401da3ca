#!/usr/bin/env bash
# The Debian packages the tests and `make run` need: the one list, and an install of the missing ones.
#
#   bash scripts/system-deps.sh          install what is missing (as root, with apt-get); silent when nothing is
#   bash scripts/system-deps.sh --check  only report: exit 1, naming the command to run, when something is missing
#   bash scripts/system-deps.sh --list   print the names, one a line
#
# Not root or no apt-get: one line on stderr names the command to run, and the exit status is 1.
# DIGITSCAN_EXTRA_PACKAGES (names separated by spaces) adds to the list; the tests use it to name a missing package.
set -euo pipefail

# Chromium and its driver: the browser tests drive Debian's Chromium with Playwright, never a downloaded browser.
# dataset-fashion-mnist: Fashion-MNIST's training split, for the real-world fine-tuning data
# (src/digitscan/training/finetune.py).
# fonts-*: handwriting fonts for photographed digits; the same names as src/digitscan/synthetic/photos.py FONT_PACKAGES
# (tests/test_setup.py checks that every one of those is here). fonts-dejavu-core, fonts-freefont-ttf and
# fonts-liberation: the printed labels of generated form pages, one family per split
# (src/digitscan/synthetic/forms.py PRINTED_FONT_FAMILIES).
PACKAGES=(
    chromium chromium-driver
    dataset-fashion-mnist
    fonts-bwht fonts-comic-neue fonts-humor-sans fonts-breip fonts-lobster fonts-lobstertwo fonts-leckerli-one
    fonts-isabella fonts-rufscript fonts-staypuft fonts-tomsontalks fonts-klee fonts-yusei-magic fonts-havana
    fonts-ecolier-court fonts-sjfonts fonts-dancingscript fonts-kaushanscript fonts-dkg-handwriting fonts-kristi
    fonts-dejavu-core fonts-freefont-ttf fonts-liberation
)
read -r -a extra <<< "${DIGITSCAN_EXTRA_PACKAGES:-}"
PACKAGES+=("${extra[@]}")

mode=install
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    --list) printf '%s\n' "${PACKAGES[@]}"; exit 0 ;;
    *) echo "usage: $0 [--check | --list]" >&2; exit 2 ;;
esac

# One dpkg query for the whole list. Only "installed" counts: a package removed but not purged is still known to
# dpkg (`dpkg -s` succeeds on its leftover config files) without its files.
installed=" $(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null \
    | awk '$NF == "installed" { printf "%s ", $1 }' || true)"
missing=()
for package in "${PACKAGES[@]}"; do
    [[ "$installed" == *" $package "* ]] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$mode" = install ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "digitscan: installing missing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Recommends left out: headless Chromium runs the browser tests without them. dpkg's progress (stdout) is
    # dropped; errors go to stderr.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "digitscan: Debian packages installed" >&2
    exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo "
echo "digitscan: missing Debian packages; run: ${sudo}apt-get update && ${sudo}apt-get install -y" \
     "--no-install-recommends ${missing[*]}" >&2
exit 1
