# The first process of a one-shot runner: see oneshot.go. It listens on
# /run/sandboxd/jupyter.sock, where the daemon's socket transport reaches
# it, and runs each request: a length-prefixed JSON header with the
# command and a nonce, carrying the fd that takes the command's stderr;
# what follows on the connection is the command's stdin, and its stdout
# goes back on it. Once the command has ended, this process itself kills
# every process the user has, checks that the writable places are empty,
# seeds them as the image wants, and ends the stream with the nonce and
# its verdict. Code cannot forge the verdict: the nonce never leaves this
# process, which code can neither signal (it is PID 1), nor trace, nor
# read (it is not dumpable). Nor can code ask for a run: only a peer
# outside the runner's pid namespace, whose pid the kernel gives as 0, is
# served.
import ctypes, json, os, shutil, signal, socket, struct, time

signal.signal(signal.SIGINT, signal.SIG_IGN)
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
SOCKET = "/run/sandboxd/jupyter.sock"
# The writable places, and what may be left in each.
PLACES = {"/workspace": set(), "/tmp": {".matplotlib"}, "/dev/shm": set(), "/dev/mqueue": set(), "/run/sandboxd": {"jupyter.sock"}}
SEED = "/opt/matplotlib"  # matplotlib's font cache, which takes seconds to build


def recv_exact(conn, n):
    b = b""
    while len(b) < n:
        more = conn.recv(n - len(b))
        if not more:
            raise EOFError
        b += more
    return b


def alive():
    """The user's processes, this one aside, that have not died."""
    me, found = os.getuid(), []
    for p in os.listdir("/proc"):
        if not p.isdigit() or p == "1":
            continue
        try:
            if os.stat("/proc/" + p).st_uid != me:
                continue
            with open("/proc/%s/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in "ZX":
            found.append(p)
    return found


def reap():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def modes():
    """The modes of the writable places but the socket's, which the daemon
    seals when it first connects."""
    found = {}
    for place in PLACES:
        if place == "/run/sandboxd":
            continue
        try:
            st = os.stat(place)
            found[place] = (st.st_mode, st.st_uid)
        except FileNotFoundError:
            pass
    return found


def clean():
    problems = []
    for attempt in range(50):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reap()
        left = alive()
        if not left:
            break
        time.sleep(0.01)
    else:
        problems.append("processes " + " ".join(left))
    for place, allowed in PLACES.items():
        try:
            extra = set(os.listdir(place)) - allowed
        except FileNotFoundError:
            continue
        if extra:
            problems.append("files in " + place)
    if modes() != MODES:
        problems.append("the modes of the writable places changed")
    mpl = os.environ.get("MPLCONFIGDIR")
    if mpl and os.path.isdir(SEED):
        shutil.rmtree(mpl, ignore_errors=True)
        shutil.copytree(SEED, mpl)
    return problems


try:
    os.unlink(SOCKET)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(SOCKET)
os.chmod(SOCKET, 0o666)
server.listen(16)
MODES = modes()
clean()
while True:
    conn, _ = server.accept()
    fds = []
    try:
        peer = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if peer[0] != 0:
            raise PermissionError("a process in the runner")
        conn.settimeout(10)
        head, fds, _, _ = socket.recv_fds(conn, 4, 1)
        head += recv_exact(conn, 4 - len(head))
        req = json.loads(recv_exact(conn, struct.unpack(">I", head)[0]))
        if len(fds) != 1:
            raise ValueError("no stderr")
        conn.settimeout(None)
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(conn.fileno(), 0)
                os.dup2(conn.fileno(), 1)
                os.dup2(fds[0], 2)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                os.execvp(req["argv"][0], req["argv"])
            finally:
                os._exit(127)
        os.close(fds.pop())
        while True:
            done, status = os.waitpid(-1, 0)
            if done == pid:
                break
        problems = clean()
        if status != 0:
            problems.insert(0, "the command ended with status %d" % status)
        verdict = "ok" if not problems else "dirty " + "; ".join(problems)
        conn.sendall(("%s %s\n" % (req["nonce"], verdict)).encode())
    except Exception:
        pass
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()
