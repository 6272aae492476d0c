#!/usr/bin/env bash
# Adds omniORB's SSL transport to a virtualenv holding the
# jeteve-omniorb==4.3.3.post7 wheel, which lacks it: libomnisslTP4 and
# omniORBpy's _omnisslTP extension and omniORB/sslTP.py, built from the
# vendored 4.3.3 sources (vendor/omniorb/) against the wheel's own
# libomniORB4 and libomnithread and the system's OpenSSL. About a minute.
#
#   scripts/omniorb-ssl.sh VENV
#
# Needs g++, make, bzip2 and OpenSSL's headers (libssl-dev); installs them
# with apt-get when missing and allowed (root).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=$(realpath "$1")
ORB_TB=$repo/vendor/omniorb/omniORB-4.3.3.tar.bz2
PY_TB=$repo/vendor/omniorb/omniORBpy-4.3.3.tar.bz2
PY=$VENV/bin/python

missing=()
command -v g++ >/dev/null || missing+=(g++)
command -v make >/dev/null || missing+=(make)
command -v bzip2 >/dev/null || missing+=(bzip2)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]} (to build omniORB's SSL transport)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "error: building omniORB's SSL transport needs ${missing[*]}: install them (apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

SP=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYINC=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
EXT=$($PY -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
LIBS=$SP/jeteve_omniorb.libs
ORBLIB=$(ls "$LIBS"/libomniORB4-*.so.* 2>/dev/null | head -1)
THRLIB=$(ls "$LIBS"/libomnithread-*.so.* 2>/dev/null | head -1)
[ -n "$ORBLIB" ] && [ -n "$THRLIB" ] || {
    echo "error: $LIBS has no libomniORB4/libomnithread: is jeteve-omniorb 4.3.3 installed in $VENV?" >&2
    exit 1
}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
cd "$W"; tar xjf "$ORB_TB"; tar xjf "$PY_TB"
O=$W/omniORB-4.3.3; P=$W/omniORBpy-4.3.3
mkdir -p "$O/build/bin" "$W/lib"
ln -s "$ORBLIB" "$W/lib/libomniORB4.so"; ln -s "$THRLIB" "$W/lib/libomnithread.so"
ln -s "$VENV/bin/omniidl" "$O/build/bin/omniidl"
(cd "$O/build" && PYTHON=$PY ../configure --with-openssl=/usr >configure.log 2>&1) || {
    tail -20 "$O/build/configure.log" >&2; exit 1; }
# The stub headers CORBA.h needs, made with the wheel's omniidl.
(cd "$O/build/src/lib/omniORB" && PATH=$VENV/bin:$PATH make -s \
   omniORB4/corbaidl_defs.hh omniORB4/ir_defs.hh omniORB4/boxes_defs.hh \
   omniORB4/pollable_defs.hh omniORB4/poa_enums_defs.hh omniORB4/omniTypedefs.hh \
   omniORB4/bootstrap.hh omniORB4/omniConnectionData.hh omniORB4/messaging.hh \
   omniORB4/Naming.hh omniORB4/distdate.hh >"$W/stubs.log" 2>&1 \
 && cp omniORB4/*.hh "$O/build/include/omniORB4/") || { tail -20 "$W/stubs.log" >&2; exit 1; }
CXX="g++ -O2 -fPIC -Wno-deprecated-declarations -D__OMNIORB4__ -D_REENTRANT -D__OSVERSION__=2"
INC="-I$O/build/include -I$O/include -I$O/include/omniORB4/internal -I$O/src/lib/omniORB/orbcore"
S=$O/src/lib/omniORB/orbcore/ssl
pids=()
for f in sslActive sslAddress sslConnection sslEndpoint sslTransportImpl sslContext; do
    $CXX -D_OMNIORB_SSL_LIBRARY $INC -I"$S" -c "$S/$f.cc" -o "$W/$f.o" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
g++ -shared -Wl,-soname,libomnisslTP4.so.3 -o "$LIBS/libomnisslTP4.so.3" "$W"/ssl*.o \
    -L"$W/lib" -lomniORB4 -lomnithread -lssl -lcrypto '-Wl,-rpath,$ORIGIN'
$CXX -shared -DPYTHON_INCLUDE="<Python.h>" -DPYTHON_THREAD_INC="<pythread.h>" \
    -I"$PYINC" -I"$P/include" -I"$P/modules" $INC "$P/modules/sslTP/pysslTP.cc" \
    -o "$SP/_omnisslTP$EXT" -L"$LIBS" -L"$W/lib" -l:libomnisslTP4.so.3 -lomniORB4 -lomnithread \
    '-Wl,-rpath,$ORIGIN/jeteve_omniorb.libs'
cp "$P/python3/omniORB/sslTP.py" "$SP/omniORB/sslTP.py"
"$PY" -c 'from omniORB import sslTP; print("omniORB.sslTP ready")'
