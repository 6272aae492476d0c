#!/usr/bin/env python3
"""omniORBpy client of DCMS::ClinicManagement over IIOP with TLS (omniORB's
SSL transport, omniORB.sslTP), driven by tests/tls.rs.

    tls_client.py REFERENCE CA_FILE CERT_FILE|- MANAGER_ID

REFERENCE is the group IOR or a corbaloc:ssliop: URL; CERT_FILE holds the
client's certificate followed by its key (as `dcms cert issue` writes it),
or - for none. It creates one nurse record as MANAGER_ID, then reads the
counts, and prints one line: "ok ID COUNTS", "user NAME managerID reason",
or "system NAME COMPLETED_..."; the exit status is 0 in every case the
server answered or refused, 2 on a surprise.
"""
import sys

from omniORB import sslTP  # registers the ssl transport: before ORB_init
from omniORB import CORBA
import DCMS


def main():
    ref, ca, cert, manager = sys.argv[1:5]
    args = ["tls_client.py",
            "-ORBsslCAFile", ca,
            "-ORBsslVerifyMode", "peer,fail",
            # Never plain TCP: the front end serves TLS only.
            "-ORBclientTransportRule", "* ssl",
            "-ORBclientCallTimeOutPeriod", "10000"]
    if cert != "-":
        # omniORB loads no private key (and so sends no certificate)
        # unless a password is set, even for an unencrypted key.
        args += ["-ORBsslKeyFile", cert, "-ORBsslKeyPassword", "unused"]
    orb = CORBA.ORB_init(args, CORBA.ORB_ID)
    try:
        obj = orb.string_to_object(ref)
        dcms = obj._narrow(DCMS.ClinicManagement)
        if dcms is None:
            print("surprise: narrow gave None")
            return 2
        rid = dcms.createNRecord(manager, "Ada", "Roy", "junior", "active", "2024-01-02")
        counts = dcms.getRecordCounts(manager)
        print("ok %s %s" % (rid, counts.replace(" ", "")))
    except DCMS.NotAuthorized as e:
        print("user NotAuthorized %s %s" % (e.managerID, e.reason))
    except CORBA.UserException as e:
        print("user %s" % type(e).__name__)
    except CORBA.SystemException as e:
        name = type(e).__name__
        completed = {CORBA.COMPLETED_YES: "COMPLETED_YES", CORBA.COMPLETED_NO: "COMPLETED_NO",
                     CORBA.COMPLETED_MAYBE: "COMPLETED_MAYBE"}.get(e.completed, str(e.completed))
        print("system %s %s" % (name, completed))
    finally:
        orb.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
