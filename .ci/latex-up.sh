#!/usr/bin/env bash
# Install pdflatex (Debian's texlive-latex-base), as root, for tests/test_latex.py: it compiles
# the report's LaTeX tables in a plain landscape article and fails on any overfull box.
# Under CI=true that test fails when pdflatex is missing; elsewhere it is skipped.
#
#   sudo .ci/latex-up.sh        # apt-get install texlive-latex-base, if pdflatex is missing
set -euo pipefail

die() { echo "latex-up: $*" >&2; exit 1; }
if command -v pdflatex >/dev/null; then
  exit 0
fi
[ "$(id -u)" = 0 ] || die "pdflatex is missing and installing it needs root (apt-get install texlive-latex-base)"
echo "latex-up: installing texlive-latex-base (apt)"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q texlive-latex-base
command -v pdflatex >/dev/null || die "texlive-latex-base installed, but pdflatex is not on PATH"
