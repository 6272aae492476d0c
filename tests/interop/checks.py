"""Shared by the omniORBpy check scripts in this folder: count checks, stop
at the first surprise, and report "ok N"."""
import sys

count = 0


def check(cond, what):
    """Counts a check; exits non-zero with WHAT on stderr when COND is false."""
    global count
    count += 1
    if not cond:
        print("FAILED: " + what, file=sys.stderr)
        sys.exit(1)


def raises(exc_type, fn, *args):
    """Calls FN(*ARGS), which must raise EXC_TYPE; returns the exception."""
    try:
        fn(*args)
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001
        check(False, "%s%r raised %r, expected %s" % (fn.__name__, args, e, exc_type.__name__))
    check(False, "%s%r returned, expected %s" % (fn.__name__, args, exc_type.__name__))


def done():
    """Prints the one line the Rust side reads: "ok N"."""
    print("ok %d" % count)
