#!/usr/bin/env python3
"""omniORBpy client of DCMS::ClinicManagement, driven by tests/corba_interop.rs.

    client.py REFERENCE [-ORB... options]

REFERENCE is a stringified IOR, a corbaloc: or a corbaname: URL; the
options after it go to ORB_init (say -ORBmaxGIOPVersion 1.0). With
-ORBnativeCharCodeSet UTF-8 it also round-trips text outside Latin-1. The stubs
must be on PYTHONPATH (omniidl -bpython idl/dcms.idl). The server must be a
fresh store: the script checks every operation, its success and every error
path, and exits non-zero on the first surprise. It prints one line "ok N"
with the number of checks on success.
"""
import sys

from omniORB import CORBA
import DCMS
from checks import check, done, raises

def main():
    ref = sys.argv[1]
    orb_args = sys.argv[2:]
    utf8 = "UTF-8" in orb_args
    orb = CORBA.ORB_init(["client.py", "-ORBclientCallTimeOutPeriod", "20000"] + orb_args, CORBA.ORB_ID)
    obj = orb.string_to_object(ref)
    check(obj is not None, "reference resolves")
    # _is_a goes to the server for a corbaloc/corbaname reference.
    check(obj._is_a("IDL:DCMS/ClinicManagement:1.0"), "_is_a ClinicManagement")
    check(not obj._is_a("IDL:DCMS/Other:1.0"), "not _is_a Other")
    check(not obj._non_existent(), "_non_existent is false")
    dcms = obj._narrow(DCMS.ClinicManagement)
    check(dcms is not None, "narrow")

    m, l, d = "MTL1234", "LVL0001", "DDO0042"
    check(dcms.getRecordCounts(m) == "MTL 0, LVL 0, DDO 0", "empty counts")

    # Non-ASCII names both ways.
    dr = dcms.createDRecord(m, "Zoé", "Müller", "12 rue Saint-Denis", "5145550001", "surgeon", "mtl")
    check(dr == "DR10000", "first doctor id: %r" % dr)
    nr = dcms.createNRecord(l, "Jörg", "Straße", "senior", "active", "2024-02-29")
    check(nr == "NR10000", "first nurse id: %r" % nr)
    dr2 = dcms.createDRecord(d, "Ann", "Mulroney", "1 Main", "5145550002", "cardiology", "ddo")
    check(dr2 == "DR10001", "second doctor id: %r" % dr2)
    check(dcms.getRecordCounts(m) == "MTL 1, LVL 1, DDO 1", "counts after creates")

    r = dcms.getRecord(m, dr)
    check(r.recordID == "DR10000" and r.kind == DCMS.DOCTOR and r.clinic == "MTL", "doctor header %r" % (r,))
    check((r.firstName, r.lastName) == ("Zoé", "Müller"), "doctor names %r" % ((r.firstName, r.lastName),))
    check((r.address, r.phone, r.specialization, r.location) == ("12 rue Saint-Denis", "5145550001", "surgeon", "mtl"),
          "doctor fields %r" % (r,))
    check((r.designation, r.status, r.statusDate) == ("", "", ""), "nurse fields of a doctor are empty")

    n = dcms.getRecord(l, nr)
    check(n.kind == DCMS.NURSE and n.clinic == "LVL", "nurse header")
    check((n.firstName, n.lastName) == ("Jörg", "Straße"), "nurse names %r" % ((n.firstName, n.lastName),))
    check((n.designation, n.status, n.statusDate) == ("senior", "active", "2024-02-29"), "nurse fields %r" % (n,))
    check((n.address, n.phone, n.specialization, n.location) == ("", "", "", ""), "doctor fields of a nurse are empty")

    # listRecords: by prefix, in any clinic the manager may see.
    lst = dcms.listRecords(m, "M")
    check(isinstance(lst, list), "RecordList is a sequence")
    names = sorted(x.lastName for x in lst)
    check("Müller" in names, "list by prefix M: %r" % names)
    check(all(x.lastName.startswith("M") for x in lst), "prefix respected")
    check(dcms.listRecords(m, "Zzz") == [], "empty list")
    check(any(x.lastName == "Straße" for x in dcms.listRecords(l, "Str")), "non-ASCII prefix")

    # editRecord and transferRecord.
    check(dcms.editRecord(m, dr, "phone", "5145559999") == dr, "edit returns the id")
    check(dcms.getRecord(m, dr).phone == "5145559999", "edit took effect")
    check(dcms.editRecord(l, nr, "status", "terminated") == nr, "edit nurse status")
    check(dcms.transferRecord(m, dr, "LVL") == dr, "transfer returns the id")
    check(dcms.getRecord(l, dr).clinic == "LVL", "transferred to LVL")
    check(dcms.getRecordCounts(m) == "MTL 0, LVL 2, DDO 1", "counts after transfer: %r" % dcms.getRecordCounts(m))

    # Every error path, with its members.
    e = raises(DCMS.InvalidRequest, dcms.getRecordCounts, "QUE1234")
    check(e.field == "managerID" and e.reason, "InvalidRequest members %r" % (e.__dict__,))
    e = raises(DCMS.InvalidRequest, dcms.createDRecord, m, "A", "B", "addr", "5145550000", "surgeon", "paris")
    check(e.field == "location", "bad location field %r" % (e.__dict__,))
    e = raises(DCMS.InvalidRequest, dcms.createNRecord, m, "A", "B", "chief", "active", "2024-01-01")
    check(e.field == "designation", "bad designation %r" % (e.__dict__,))
    e = raises(DCMS.InvalidRequest, dcms.createNRecord, m, "A", "B", "junior", "active", "2023-02-29")
    check(e.field == "statusDate", "bad date %r" % (e.__dict__,))
    e = raises(DCMS.InvalidRequest, dcms.editRecord, l, dr, "nosuchfield", "x")
    check(e.field == "fieldName", "bad field name %r" % (e.__dict__,))
    e = raises(DCMS.InvalidRequest, dcms.getRecord, m, "XX1")
    check(e.field == "recordID", "bad record id %r" % (e.__dict__,))
    e = raises(DCMS.InvalidRequest, dcms.listRecords, "", "M")
    check(e.field == "managerID", "empty manager %r" % (e.__dict__,))
    e = raises(DCMS.InvalidRequest, dcms.transferRecord, l, dr, "QUE")
    check(e.field == "remoteClinicServerName", "bad remote clinic %r" % (e.__dict__,))

    e = raises(DCMS.NotFound, dcms.getRecord, m, "DR99999")
    check(e.recordID == "DR99999", "NotFound member %r" % (e.__dict__,))
    e = raises(DCMS.NotFound, dcms.editRecord, m, "NR12345", "status", "active")
    check(e.recordID == "NR12345", "NotFound on edit")
    e = raises(DCMS.NotFound, dcms.transferRecord, m, "DR54321", "DDO")
    check(e.recordID == "DR54321", "NotFound on transfer")

    e = raises(DCMS.NotAuthorized, dcms.editRecord, m, dr, "phone", "5140000000")
    check(e.managerID == m and e.reason, "NotAuthorized members %r" % (e.__dict__,))
    e = raises(DCMS.NotAuthorized, dcms.transferRecord, d, nr, "MTL")
    check(e.managerID == d, "NotAuthorized on transfer")
    raises(DCMS.NotAuthorized, dcms.getRecord, m, dr2)

    # Refusals changed nothing.
    check(dcms.getRecordCounts(d) == "MTL 0, LVL 2, DDO 1", "refusals change nothing")

    if utf8:
        wide = dcms.createDRecord(d, "Łukasz", "Łódź 東京", "ul. Żółta", "5145550003", "ent", "ddo")
        w = dcms.getRecord(d, wide)
        check((w.firstName, w.lastName, w.address) == ("Łukasz", "Łódź 東京", "ul. Żółta"),
              "text outside Latin-1 %r" % ((w.firstName, w.lastName, w.address),))
        check([x.recordID for x in dcms.listRecords(d, "Łó")] == [wide], "non-Latin-1 prefix")

    # An operation the server does not have: BAD_OPERATION from a DII-less
    # trick: call through an object narrowed to a made-up interface is not
    # possible in omniORBpy, so the Rust tests cover it with raw GIOP.
    done()
    orb.destroy()


if __name__ == "__main__":
    main()
