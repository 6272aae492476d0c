#!/usr/bin/env python3
"""omniORBpy client sending FT-CORBA's FT_REQUEST context, driven by
tests/corba_interop.rs.

    ft_client.py REFERENCE

The context is encoded by omniORB (omniORB.cdrMarshal of the standard
FT::FTRequestServiceContext, stubs from tests/interop/ft.idl) and added by
an omniORBpy client interceptor. The script checks that a retried write
(same client ID and retention ID) executes once and answers as the first
try, that a new retention ID executes again, that an expired request is
not executed (DCMS::Unavailable), and that a malformed or far-future
context is refused (DCMS::InvalidRequest on FT_REQUEST) without running.
Prints "ok N" on success.
"""
import struct
import sys
import time

import omniORB
from omniORB import CORBA, interceptors
import DCMS
from checks import check, done
import FT

FT_REQUEST = 13
# TimeBase::TimeT of 1970-01-01: 100 ns units since 1582-10-15.
UNIX_EPOCH_TIME_T = 0x01B21DD213814000

context = None  # the encapsulation the interceptor adds, or None


def add_context(operation, service_contexts):
    if context is not None:
        service_contexts.append((FT_REQUEST, context))


def ft(client_id, retention_id, seconds_from_now):
    t = int((time.time() + seconds_from_now) * 10_000_000) + UNIX_EPOCH_TIME_T
    value = FT.FTRequestServiceContext(client_id, retention_id, t)
    return omniORB.cdrMarshal(FT._tc_FTRequestServiceContext, value)


def counts(cm):
    # "MTL 1, LVL 0, DDO 0" -> total
    return sum(int(part.split()[1]) for part in cm.getRecordCounts("MTL0001").split(","))


def main():
    global context
    interceptors.addClientSendRequest(add_context)
    orb = CORBA.ORB_init(["ft_client.py", "-ORBclientCallTimeOutPeriod", "20000"], CORBA.ORB_ID)
    cm = orb.string_to_object(sys.argv[1])._narrow(DCMS.ClinicManagement)
    check(cm is not None, "narrow")
    client = "omniORBpy-ft-%d" % int(time.time() * 1000)
    before = counts(cm)

    def create():
        return cm.createDRecord("MTL0001", "Ada", "Retry", "1 Main St", "514-555-0199", "surgeon", "mtl")

    context = ft(client, 1, 60)
    first = create()
    again = create()
    check(first == again, "a retry answers as the first try (%s, %s)" % (first, again))
    check(counts(cm) == before + 1, "a retry executes nothing")
    context = ft(client, 2, 60)
    other = create()
    check(other != first, "a new retention ID executes again")
    check(counts(cm) == before + 2, "one more record")

    context = ft(client, 3, -1)
    try:
        create()
        check(False, "an expired request ran")
    except DCMS.Unavailable as e:
        check("expired" in e.reason, "the refusal says why: " + e.reason)
    check(counts(cm) == before + 2, "an expired request does not run")

    for bad, what in [(b"\x07garbage", "byte order"), (ft(client, 4, 86400), "expiration_time")]:
        context = bad
        try:
            create()
            check(False, "a bad context (%s) ran" % what)
        except DCMS.InvalidRequest as e:
            check(e.field == "FT_REQUEST", "names the context: " + e.field)
            check(what in e.reason, "says what is wrong: " + e.reason)
    context = None
    check(counts(cm) == before + 2, "nothing ran")
    # Reads carry the context harmlessly.
    context = ft(client, 5, 60)
    check(counts(cm) == before + 2, "a read with a context")
    context = None
    done()


if __name__ == "__main__":
    main()
