# Shared set-up for scripts/main.sh and scripts/test.sh (sourced, not run).
#
# - apt_install PKG...: installs Debian packages that are missing, waiting for apt's lock
#   instead of failing when another apt runs, and saying plainly when root is needed.
# - use_python EXTRAS: makes `python` a Python that has tore_nb[EXTRAS] installed. Inside a
#   virtualenv (or conda env) that is the active one; otherwise ./.venv, created on first use with
#   the system's packages visible (Debian's own Python is "externally managed": pip may not
#   install into it, but it may install into a venv on top of it). A stamp records what was
#   installed, so a second run does not call pip at all.

apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo"
    else
      echo "tore_nb needs the Debian packages ${missing[*]}, and installing them needs root:" >&2
      echo "  sudo apt-get install -y ${missing[*]}" >&2
      echo "then run this script again." >&2
      exit 1
    fi
  fi
  echo "installing Debian packages: ${missing[*]}"
  # wait up to 10 minutes for another apt (unattended-upgrades) to release its lock
  local apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q)
  "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1 \
    || { "${apt[@]}" update >/dev/null && "${apt[@]}" install "${missing[@]}" >/dev/null; }
}

use_python() {
  local extras="$1"
  if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
    PY="$(command -v python || command -v python3)"
  else
    if [ ! -x .venv/bin/python ]; then
      python3 -c "import venv, ensurepip" 2>/dev/null || apt_install python3-venv
      echo "creating .venv (a virtualenv that sees the system's packages)"
      python3 -m venv --system-site-packages .venv
    fi
    PY="$PWD/.venv/bin/python"
    export VIRTUAL_ENV="$PWD/.venv"
    export PATH="$VIRTUAL_ENV/bin:$PATH"
    # Jupyter's data files (nbconvert's templates, kernel specs) of packages the venv sees from
    # the system are under the system's prefix, which Jupyter does not search from a venv
    local base
    base="$("$PY" -c 'import sys; print(sys.base_prefix)')"
    export JUPYTER_PATH="$base/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
  fi
  # what is installed depends on the extras, the project's requirements and the interpreter
  local stamp_dir
  stamp_dir="$("$PY" -c 'import sys; print(sys.prefix)')"
  local want
  want="$extras $(sha256sum pyproject.toml | cut -c1-16) $PWD"
  local stamp="$stamp_dir/.tore-nb-installed-${extras//[^a-z,]/_}"
  # and the tore_nb it imports must be this checkout's, not another one's editable install
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$PY" -c "import sys, tore_nb; sys.exit(not tore_nb.__file__.startswith('$PWD/'))" 2>/dev/null; then
    return 0
  fi
  echo "installing tore_nb[$extras] into $stamp_dir"
  "$PY" -m pip install -q --disable-pip-version-check -e ".[$extras]"
  echo "$want" >"$stamp"
}
