#!/usr/bin/env python3
"""omniORBpy client of the DCMS group reference, driven by tests/corba_interop.rs.

    failover.py REFERENCE [-ORB... options]

REFERENCE names every front end (the group IOR of dcms.ior, or the group
corbaloc). The script creates nurses one after another and keeps going
while the test kills the front end it is connected to. Protocol:

- it makes 10 calls, then prints "ready" and goes on calling;
- the test kills a front end, then writes "stop" on standard input;
- it stops and prints one line "done CALLS RETRIED FAILED", then one line
  "error NAME COMPLETION" per exception seen, and exits 0.

A call that fails with COMM_FAILURE or TRANSIENT, COMPLETED_MAYBE (the call
in flight when its connection broke) is made again, up to twice (RETRIED
counts each try): omniORB's first retry can reach the killed front end's
listening socket in the moment before the kernel closes it, and be reset
(seen in 2 of 12 runs). A third failure of the same call, or any other
exception, counts as FAILED. The
stubs must be on PYTHONPATH (omniidl -bpython idl/dcms.idl).
"""
import sys
import threading

from omniORB import CORBA
import DCMS


def main():
    ref = sys.argv[1]
    orb_args = sys.argv[2:]
    orb = CORBA.ORB_init(["failover.py", "-ORBclientCallTimeOutPeriod", "10000"] + orb_args, CORBA.ORB_ID)
    dcms = orb.string_to_object(ref)._narrow(DCMS.ClinicManagement)
    if dcms is None:
        print("FAILED: narrow", file=sys.stderr)
        sys.exit(1)

    stop = threading.Event()

    def wait_for_stop():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()

    calls = retried = failed = 0
    errors = []

    def create(i):
        return dcms.createNRecord("LVL0001", "Ann", "Ng%d" % i, "senior", "active", "2024-01-31")

    i = 0
    while not stop.is_set():
        i += 1
        calls += 1
        try:
            create(i)
        except (CORBA.COMM_FAILURE, CORBA.TRANSIENT) as e:
            errors.append((type(e).__name__, str(e.completed)))
            if e.completed != CORBA.COMPLETED_MAYBE:
                failed += 1
            else:
                # In flight when its connection broke: made again.
                for attempt in (1, 2):
                    retried += 1
                    try:
                        create(i)
                        break
                    except CORBA.SystemException as e2:
                        errors.append((type(e2).__name__, str(e2.completed)))
                        if attempt == 2 or not isinstance(e2, (CORBA.COMM_FAILURE, CORBA.TRANSIENT)):
                            failed += 1
                            break
        except CORBA.SystemException as e:
            errors.append((type(e).__name__, str(e.completed)))
            failed += 1
        if i == 10:
            print("ready", flush=True)
    print("done %d %d %d" % (calls, retried, failed))
    for name, completed in errors:
        print("error %s %s" % (name, completed))
    sys.stdout.flush()
    orb.destroy()


if __name__ == "__main__":
    main()
