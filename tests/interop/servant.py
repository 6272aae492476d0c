#!/usr/bin/env python3
"""An omniORBpy servant of DCMS::ClinicManagement, for testing `dcms client`.

    servant.py IOR_FILE PORT

Listens on 127.0.0.1:PORT, answers to corbaloc:iiop:127.0.0.1:PORT/DCMS
(omniINSPOA), writes its IOR to IOR_FILE and prints "ready". Each operation
echoes its arguments so the caller can check marshalling both ways; special
manager IDs raise exceptions:

    INVALID -> InvalidRequest(field="managerID", reason="bad manager é")
    NOAUTH  -> NotAuthorized(managerID, "nope")
    UNAVAIL -> Unavailable("python says no")
    TRANSIENT -> CORBA.TRANSIENT(minor 7, COMPLETED_MAYBE)
and record ID DR99999 raises NotFound (edit, transfer, get).
"""
import sys

from omniORB import CORBA
import DCMS
import DCMS__POA


def special(m):
    if m == "INVALID":
        raise DCMS.InvalidRequest("managerID", "bad manager é")
    if m == "NOAUTH":
        raise DCMS.NotAuthorized(m, "nope")
    if m == "UNAVAIL":
        raise DCMS.Unavailable("python says no")
    if m == "TRANSIENT":
        raise CORBA.TRANSIENT(7, CORBA.COMPLETED_MAYBE)


def not_found(rid):
    if rid == "DR99999":
        raise DCMS.NotFound(rid)


def doctor(rid, first, last):
    return DCMS.Record(rid, DCMS.DOCTOR, "MTL", first, last, "1 rue", "514", "surgeon", "mtl", "", "", "")


def nurse(rid, first, last):
    return DCMS.Record(rid, DCMS.NURSE, "LVL", first, last, "", "", "", "", "senior", "active", "2024-02-29")


class Servant(DCMS__POA.ClinicManagement):
    def createDRecord(self, m, *args):
        special(m)
        return "DR|" + "|".join((m,) + args)

    def createNRecord(self, m, *args):
        special(m)
        return "NR|" + "|".join((m,) + args)

    def getRecordCounts(self, m):
        special(m)
        return "MTL 1, LVL 2, DDO 3"

    def editRecord(self, m, rid, field, value):
        special(m)
        not_found(rid)
        return "|".join((m, rid, field, value))

    def transferRecord(self, m, rid, remote):
        special(m)
        not_found(rid)
        return "|".join((m, rid, remote))

    def getRecord(self, m, rid):
        special(m)
        not_found(rid)
        if rid.startswith("NR"):
            return nurse(rid, "Jörg", "Straße")
        return doctor(rid, "Zoé", "Müller")

    def listRecords(self, m, prefix):
        special(m)
        if prefix == "none":
            return []
        return [doctor("DR10000", "Zoé", prefix + "ü"), nurse("NR10000", "Jörg", prefix + "ß")]


def main():
    ior_file, port = sys.argv[1], sys.argv[2]
    orb = CORBA.ORB_init(["servant.py", "-ORBendPoint", "giop:tcp:127.0.0.1:%s" % port], CORBA.ORB_ID)
    poa = orb.resolve_initial_references("omniINSPOA")
    servant = Servant()
    poa.activate_object_with_id(b"DCMS", servant)
    poa._get_the_POAManager().activate()
    ref = poa.id_to_reference(b"DCMS")
    with open(ior_file + ".tmp", "w") as f:
        f.write(orb.object_to_string(ref) + "\n")
    import os
    os.replace(ior_file + ".tmp", ior_file)
    print("ready", flush=True)
    orb.run()


if __name__ == "__main__":
    main()
