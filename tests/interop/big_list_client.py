#!/usr/bin/env python3
"""omniORBpy client, at omniORB's default settings, of a prefix matching tens
of thousands of records; driven by tests/corba_interop.rs.

    big_list_client.py REFERENCE PREFIX STABLE

The cluster holds STABLE doctors of MTL named PREFIX + "s" + six digits
(000000 up), which stay for the whole listing, while the test creates more
under the prefix (named like a stable one plus "n") and transfers others
(stable name plus "m") to another clinic. Checks:

- listRecords on the prefix is refused with DCMS::InvalidRequest naming
  lastNamePrefix, the paged operation and the count, not with the
  MARSHAL error an answer over omniORB's 2 MiB giopMaxMsgSize would be;
- listRecordsPage, page by page, lists every stable record exactly once,
  no record twice, in last-name order, each page within the server's 1,000
  and the cursor the page's last ID.

Prints "listing" when the paging starts, then "ok N" on success.
"""
import re
import sys

from omniORB import CORBA
import DCMS
from checks import check, done, raises


def main():
    reference, prefix, stable = sys.argv[1], sys.argv[2], int(sys.argv[3])
    orb = CORBA.ORB_init(["big_list_client.py"], CORBA.ORB_ID)
    cm = orb.string_to_object(reference)._narrow(DCMS.ClinicManagement)

    e = raises(DCMS.InvalidRequest, cm.listRecords, "MTL0001", prefix)
    check(e.field == "lastNamePrefix", "the refusal names lastNamePrefix: %s" % e.field)
    check("listRecordsPage" in e.reason, "the reason names listRecordsPage: %s" % e.reason)
    count = int(re.match(r"(\d+) records match", e.reason).group(1))
    check(count >= stable, "the reason counts the matches (%d, at least %d)" % (count, stable))

    print("listing", flush=True)
    stable_name = re.compile(re.escape(prefix) + r"s(\d{6})$")
    seen_ids, seen_stable = set(), [0] * stable
    last_key, after, pages, extra = "", "", 0, {"n": 0, "m": 0}
    while True:
        page = cm.listRecordsPage("MTL0001", prefix, after, 4096)
        pages += 1
        check(len(page.records) <= 1000, "a page holds at most 1,000 (%d)" % len(page.records))
        for r in page.records:
            check(r.recordID not in seen_ids, "%s listed twice" % r.recordID)
            seen_ids.add(r.recordID)
            key = r.lastName.lower()
            check(key >= last_key, "order: %r after %r" % (r.lastName, last_key))
            last_key = key
            m = stable_name.match(r.lastName)
            if m:
                seen_stable[int(m.group(1))] += 1
            elif r.lastName[-1] in extra:
                extra[r.lastName[-1]] += 1
            else:
                check(False, "unexpected record %s %r" % (r.recordID, r.lastName))
        if page.nextAfter == "":
            break
        check(page.nextAfter == page.records[-1].recordID, "the cursor is the page's last ID")
        after = page.nextAfter
    missing = [i for i, n in enumerate(seen_stable) if n == 0]
    check(not missing, "%d stable records missing, first %s" % (len(missing), missing[:5]))
    check(all(n == 1 for n in seen_stable), "each stable record once")
    check(pages >= stable // 1000, "%d records came in %d pages" % (len(seen_ids), pages))
    print("listed %d records in %d pages, %d of them created during the listing and %d"
          " among those it transferred away" % (len(seen_ids), pages, extra["n"], extra["m"]), file=sys.stderr)
    done()


if __name__ == "__main__":
    main()
