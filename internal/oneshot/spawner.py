# The first process of a one-shot runner: see oneshot.go. It listens on
# /run/sandboxd/jupyter.sock, where the daemon's socket transport reaches
# it, and runs each request: a length-prefixed JSON header with the
# command and a nonce, carrying the fd that takes the command's stderr;
# what follows on the connection is the command's stdin, and its stdout
# goes back on it. Once the command has ended, this process itself kills
# every process the user has, wipes the writable places, checks that they
# are empty and that no System V IPC object is left, seeds them as the
# image wants, and ends the stream with the nonce and its verdict. Code cannot forge the verdict: the nonce never leaves this
# process, which code can neither signal (it is PID 1), nor trace, nor
# read (it is not dumpable). Nor can code ask for a run: only a peer
# outside the runner's pid namespace, whose pid the kernel gives as 0, is
# served.
#
# Given a program (the arguments after the script), it starts it ahead of
# each run, once the runner is found clean: the interpreter starts and
# imports while no run is there, and waits on file descriptor 0, a socket,
# for the run's connection and stderr. A request that says "prestarted"
# hands them to it, times the program from then on (the program cannot
# stop this process's clock), and once it has ended and every process of
# the user is killed, runs the command (the driver) to report and clean
# up. Nothing of a run reaches the next run's program: it is started after
# the kill, the wipe and the checks.
import ctypes, json, os, select, shutil, signal, socket, struct, sys, time

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


def kill_all():
    """Kills every process of the user; returns those left."""
    for attempt in range(50):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        reap()
        left = alive()
        if not left:
            return []
        time.sleep(0.01)
    return left


def remove(path):
    """Removes path, a directory with all it holds, whatever their modes."""
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        for name in os.listdir(path):
            remove(os.path.join(path, name))
        os.rmdir(path)
    else:
        os.unlink(path)


def clean():
    problems = []
    left = kill_all()
    if left:
        problems.append("processes " + " ".join(left))
    # No process of the user is left to race the wipe.
    for place in PLACES:
        try:
            names = os.listdir(place)
        except FileNotFoundError:
            continue
        for name in names:
            if place != "/run/sandboxd" or name != "jupyter.sock":
                try:
                    remove(os.path.join(place, name))
                except (OSError, RecursionError):
                    pass
    for ipc in ("shm", "sem", "msg"):
        try:
            with open("/proc/sysvipc/" + ipc) as f:
                if len(f.read().splitlines()) > 1:
                    problems.append("ipc " + ipc)
        except FileNotFoundError:
            pass
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


PROGRAM = sys.argv[1:]
RESULT = "/tmp/.sandboxd-result"


def prestart():
    """Starts PROGRAM, to wait on fd 0 for a run; returns its pid and the
    socket to hand it the run on."""
    mine, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir("/workspace")
            null = os.open("/dev/null", os.O_RDWR)
            result = os.open(RESULT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            os.dup2(theirs.fileno(), 0)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.dup2(result, 3)
            os.closerange(4, 1 << 16)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.execvp(PROGRAM[0], PROGRAM)
        finally:
            os._exit(127)
    theirs.close()
    return pid, mine


def wait_for(pid, timeout):
    """Waits for pid, past timeout seconds TERM, 2 seconds later KILL, as
    timeout -k 2 does; returns its exit code as timeout reports it."""
    fd = os.pidfd_open(pid)
    try:
        deadline, signalled = time.monotonic() + timeout, None
        while True:
            if select.select([fd], [], [], max(0, deadline - time.monotonic()))[0]:
                status = os.waitpid(pid, 0)[1]
                break
            if signalled is None:
                signalled = signal.SIGTERM
                deadline += 2
            else:
                signalled = signal.SIGKILL
                deadline += 3600
            os.kill(pid, signalled)
    finally:
        os.close(fd)
    if signalled == signal.SIGKILL:
        return 128 + signal.SIGKILL
    if signalled is not None:
        return 124
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def recv_line(conn):
    line = b""
    while not line.endswith(b"\n"):
        if len(line) > 200:
            raise ValueError("no nonce")
        c = conn.recv(1)
        if not c:
            raise EOFError
        line += c
    return line


def run_prestarted(conn, req, fds, started):
    """Hands the run to the started program, waits for it, kills what it
    left, and runs the driver to report and clean up; returns the driver's
    status."""
    pid, ctl = started
    nonce = recv_line(conn)
    try:
        ctl.sendmsg([b"r"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("2i", conn.fileno(), fds[0]))])
        t0 = time.monotonic()
    finally:
        ctl.close()
    rc = wait_for(pid, req["timeout"])
    elapsed_cs = int((time.monotonic() - t0) * 100)
    kill_all()
    # The run's stderr ends here: the daemon may answer once the report
    # is in, before the cleanup.
    os.close(fds.pop())
    r, w = os.pipe()
    os.write(w, nonce + b"%d %d\n" % (rc, elapsed_cs))
    os.close(w)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(r, 0)
            os.dup2(conn.fileno(), 1)
            null = os.open("/dev/null", os.O_WRONLY)
            os.dup2(null, 2)
            os.execvp(req["argv"][0], req["argv"])
        finally:
            os._exit(127)
    os.close(r)
    return os.waitpid(pid, 0)[1]


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
started = None
while True:
    conn, _ = server.accept()
    fds = []
    clean_now = False
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
        clean_now = True
        if started is not None and not req.get("prestarted"):
            started[1].close()
            started = None
        if req.get("prestarted"):
            if started is None:
                raise ValueError("no program started")
            run, started = started, None
            status = run_prestarted(conn, req, fds, run)
        else:
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
        clean_now = False
        if status != 0:
            problems.insert(0, "the command ended with status %d" % status)
        verdict = "ok" if not problems else "dirty " + "; ".join(problems)
        if PROGRAM and not problems:
            # Started after the kill and the checks: nothing of the run
            # that just ended can reach it.
            started = prestart()
        conn.sendall(("%s %s\n" % (req["nonce"], verdict)).encode())
    except Exception:
        if clean_now:
            # A run that failed midway: no program starts until the next
            # clean check, which the daemon never asks of a runner it
            # removes.
            if started is not None:
                started[1].close()
                started = None
            kill_all()
    finally:
        for fd in fds:
            os.close(fd)
        conn.close()
