# Runs one request in a fresh interpreter: see protocol.go. Standard input
# is the request as JSON; file descriptor 3 takes the report: the value
# main returned, and the peak memory. The request's code runs in a
# namespace of its own, as __main__, with its tracebacks pointing at its
# own lines.
import json, linecache, os, resource, sys, traceback

req = json.load(sys.stdin)
report = os.fdopen(3, "w", encoding="utf-8")
sys.path.insert(0, os.getcwd())
os.makedirs("artifacts", exist_ok=True)
out = {}
ns = {"__name__": "__main__", "__builtins__": __builtins__}


def run(source, filename):
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
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
            out["result"] = {"present": True, "value": value, "type": "json"}
            json.dumps(out["result"], allow_nan=False)  # fails here, as the program's own error
    except SystemExit:
        raise
    except BaseException:
        out.pop("result", None)
        t, v, tb = sys.exc_info()
        traceback.print_exception(t, v, tb.tb_next)
        status = 1
finally:
    sys.stdout.flush()
    usage = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    out["max_rss_kb"] = usage
    report.write(json.dumps(out, ensure_ascii=False, separators=(",", ":")))
    report.close()
sys.exit(status)
