#!/usr/bin/env python3
"""omniORBpy client of listRecordsPage, driven by tests/corba_interop.rs.

    page_client.py REFERENCE

Creates 25 doctors under a fresh last-name prefix, then checks that
listRecordsPage, page by page (maxCount 7), lists exactly what listRecords
lists, in the same order, and that bad arguments are refused by name.
Prints "ok N" on success.
"""
import random
import string
import sys

from omniORB import CORBA
import DCMS
from checks import check, done


def main():
    orb = CORBA.ORB_init(["page_client.py"], CORBA.ORB_ID)
    cm = orb.string_to_object(sys.argv[1])._narrow(DCMS.ClinicManagement)
    prefix = "Pg" + "".join(random.choice(string.ascii_lowercase) for _ in range(6))
    for i in range(25):
        cm.createDRecord("MTL0001", "Ann", "%s%02d" % (prefix, 24 - i), "1 Main St",
                         "514-555-0199", "surgeon", "mtl")
    whole = [r.recordID for r in cm.listRecords("MTL0001", prefix)]
    check(len(whole) == 25, "listRecords finds the 25 (%d)" % len(whole))
    paged, after, pages = [], "", 0
    while True:
        page = cm.listRecordsPage("MTL0001", prefix, after, 7)
        pages += 1
        check(len(page.records) <= 7, "a page holds at most maxCount")
        paged += [r.recordID for r in page.records]
        if page.nextAfter == "":
            break
        check(page.nextAfter == page.records[-1].recordID, "the cursor is the page's last ID")
        after = page.nextAfter
    check(pages == 4, "25 records in pages of 7 are 4 pages (%d)" % pages)
    check(paged == whole, "the pages list what listRecords lists, in order")
    for args, field in [((prefix, "", 0), "maxCount"), ((prefix, "bogus", 5), "afterRecordID")]:
        try:
            cm.listRecordsPage("MTL0001", *args)
            check(False, "bad %s accepted" % field)
        except DCMS.InvalidRequest as e:
            check(e.field == field, "names %s: %s" % (field, e.field))
    done()


if __name__ == "__main__":
    main()
