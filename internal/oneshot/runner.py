# Runs one request in a fresh interpreter: see protocol.go. Standard input
# is the request as JSON; file descriptor 3 takes the report, as JSON: the
# value main returned, and the peak memory. The request's code runs in a
# namespace of its own, as __main__, with its tracebacks pointing at its
# own lines.
#
# The interpreter starts without the site module (-S), which costs more
# than the rest of the start: site-packages join sys.path the first time
# an import finds nothing in the standard library. The json module (and re
# with it) costs nearly as much, and is not imported: the request, JSON
# that the daemon wrote, is a Python expression too once true, false and
# null are names; main's value is written by the C encoder json.dumps
# itself uses.
import os, resource, sys
import _sitebuiltins, builtins

builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


class LazySite:
    @staticmethod
    def find_spec(name, path=None, target=None):
        sys.meta_path.remove(LazySite)
        import importlib.machinery, site

        site.main()
        return importlib.machinery.PathFinder.find_spec(name, path, target) if path is None else None


if sys.argv[1:] == ["prestart"]:
    # Started ahead of the run (see spawner.py): wait for the run's
    # connection, which becomes stdin and stdout, and its stderr. The
    # socket module is not imported, for the same reason as json.
    del sys.argv[1:]
    import _socket

    ctl = _socket.socket(fileno=0)
    _, anc, _, _ = ctl.recvmsg(1, _socket.CMSG_SPACE(2 * 4))
    ctl.detach()
    fds = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i : i + 4], sys.byteorder, signed=True) for i in range(0, len(data) - 3, 4)]
    if len(fds) != 2:
        os._exit(90)
    os.dup2(fds[0], 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    os.close(fds[0])
    os.close(fds[1])
    del ctl, anc, fds
sys.meta_path.append(LazySite)
req = eval(sys.stdin.read(), {"__builtins__": {}, "true": True, "false": False, "null": None})
report = os.fdopen(3, "w", encoding="utf-8")
sys.path.insert(0, os.getcwd())
os.makedirs("artifacts", exist_ok=True)
out = {}
ns = {"__name__": "__main__", "__builtins__": builtins}
sources = {}


def to_json(value):
    try:
        import _json

        def default(o):
            raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")

        encode = _json.make_encoder({}, default, _json.encode_basestring, None, ":", ",", False, False, False)
    except (ImportError, AttributeError, TypeError):
        import json

        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return "".join(encode(value, 0))


def run(source, filename):
    sources[filename] = source
    exec(compile(source, filename, "exec"), ns)


status = 0
try:
    try:
        if req.get("preload"):
            run(req["preload"], "preload.py")
        run(req["code"], "main.py")
        if req["mode"] == "main":
            if not callable(ns.get("main")):
                raise NameError("the code defines no function main")
            value = ns["main"](**(req.get("arguments") or {}))
            # Fails here, as the program's own error, when value is not JSON.
            out["result"] = to_json({"present": True, "value": value, "type": "json"})
    except SystemExit:
        raise
    except BaseException:
        out.pop("result", None)
        t, v, tb = sys.exc_info()
        import linecache, traceback

        for filename, source in sources.items():
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        traceback.print_exception(t, v, tb.tb_next)
        status = 1
finally:
    sys.stdout.flush()
    usage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    result = ',"result":' + out["result"] if "result" in out else ""
    report.write('{"max_rss_kb":%d%s}' % (usage, result))
    report.close()
sys.exit(status)
