#!/usr/bin/env bash
# Creates (idempotently) the Python virtualenv the CORBA interop tests use:
# <repo>/.venv with omniORB 4.3 and omniORBpy (omniidl, omniNames, catior),
# and omniORB's SSL transport (omniORB.sslTP, for the tests of IIOP over
# TLS), which the wheel lacks: built by scripts/omniorb-ssl.sh from
# vendor/omniorb/ (needs g++ and libssl-dev; installed with apt-get if
# missing and run as root).
#
#   scripts/venv.sh            # create or check <repo>/.venv
#   DCMS_VENV=/path scripts/venv.sh
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DCMS_VENV:-$repo/.venv}"
pkg="jeteve-omniorb==4.3.3.post7"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import omniORB, CORBA' 2>/dev/null \
    || [ ! -x "$venv/bin/omniidl" ] || [ ! -x "$venv/bin/omniNames" ] || [ ! -x "$venv/bin/catior" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$pkg"
fi
if ! "$venv/bin/python" -c 'from omniORB import sslTP' 2>/dev/null; then
    echo "building omniORB's SSL transport into $venv (scripts/omniorb-ssl.sh)"
    "$repo/scripts/omniorb-ssl.sh" "$venv"
fi
for tool in omniidl omniNames catior; do
    [ -x "$venv/bin/$tool" ] || { echo "error: $venv/bin/$tool missing after installing $pkg" >&2; exit 1; }
done
"$venv/bin/python" -c 'import omniORB, CORBA; from omniORB import sslTP; print("omniORBpy", omniORB.__version__, "with sslTP")'
echo "ok: $venv"
