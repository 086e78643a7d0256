"""A small Jupyter kernel that runs JavaScript in one long-lived node process.

Debian packages no JavaScript kernel (no ijavascript, no zeromq for node),
so this is our own, built like the bash kernel beside the python one.

How it works: node runs node_helper.js with its stdin on /dev/null and its
stdout and stderr on pipes. Cells go to it, and answers come back, as JSON
lines over a socket pair of their own, so nothing the code prints can be
taken for an answer. Output is forwarded as `stream` messages as it
arrives; node answers only after all the cell printed is in the pipes, and
the kernel reads the pipes empty before it replies.

If node ends (process.exit(), a crash, or a kill after an interrupt it did
not heed), the cell fails and the next one starts a new node: the state is
lost, the working dir and env are kept.
"""

import codecs
import json
import os
import select
import signal
import socket
import subprocess
import time

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_helper.js")

# After an interrupt, a cell that has not stopped in this many seconds (a
# loop in a callback, which SIGINT cannot reach) gets its node killed and a
# new one started. Below sandboxd's own grace, so its timeouts see a reply.
INTERRUPT_GRACE = 2.0
# SIGINT is sent again this often until the cell stops: node cannot act on
# one that comes while it is still reading or compiling the cell.
RESIGNAL = 0.2


def node_version():
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip().lstrip("v")
    except (OSError, subprocess.SubprocessError):
        return ""


def make_oom_target(pid):
    """Makes pid the first process the kernel kills when the container runs
    out of memory, as the python3 kernel is in its own image. Only node, not
    this kernel: it starts a new node then, and answers the cell. What node
    starts inherits the score. Raising a score needs no privilege."""
    try:
        with open("/proc/%d/oom_score_adj" % pid, "w") as f:
            f.write("1000")
    except OSError:
        pass


class JavaScriptKernel(Kernel):
    implementation = "sandboxd_javascript"
    implementation_version = "1.0"
    language = "javascript"
    language_version = node_version()
    language_info = {
        "name": "javascript",
        "version": language_version,
        "mimetype": "application/javascript",
        "file_extension": ".js",
        "codemirror_mode": "javascript",
        "pygments_lexer": "javascript",
    }
    banner = "Node.js " + language_version

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._node = None
        self._control = None
        self._replies = b""
        # Where a new node starts: where the last one was.
        self._cwd = None
        self._env = None
        self._running = False
        self._interrupted_at = None
        self._signalled_at = None
        self._exit_code = None
        self._starting = False
        # node starts while Jupyter connects: the first cell need not wait.
        try:
            self._start_node()
        except OSError:
            pass  # the first cell tries again, and says why it fails

    def _start_node(self):
        ours, theirs = socket.socketpair()
        cwd = self._cwd if self._cwd and os.path.isdir(self._cwd) else None
        # Its own session, so the kernel alone decides what SIGINT reaches
        # it and the processes it starts.
        try:
            self._node = subprocess.Popen(
                ["node", HELPER, str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd=cwd,
                env=self._env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        make_oom_target(self._node.pid)
        self._control = ours
        self._replies = b""
        for f in (self._node.stdout, self._node.stderr):
            os.set_blocking(f.fileno(), False)
        self._starting = True

    def _ensure_node(self):
        """Starts node if it is not running, and waits until it is ready."""
        if not self._alive():
            self._kill_node()
            self._start_node()
        if self._starting:
            ready = self._run(lambda name, text: None)
            if ready is None or ready.get("status") != "ready":
                raise RuntimeError("node did not start (exit code %s)" % self._exit_code)
            self._starting = False

    def _alive(self):
        return self._node is not None and self._node.poll() is None

    def _kill_node(self):
        if self._node is None:
            return
        try:
            os.killpg(self._node.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._node.wait()
        for f in (self._node.stdout, self._node.stderr, self._control):
            try:
                f.close()
            except OSError:
                pass
        self._node = None
        self._control = None

    def pre_handler_hook(self):
        # Instead of ipykernel's KeyboardInterrupt, which would skip the reply.
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame):
        # Jupyter interrupts a kernel by sending SIGINT to its process group;
        # pass it on to node's group, which holds the running code and the
        # processes it started. node_helper.js turns it into an error.
        if self._running and self._alive():
            self._interrupted_at = time.monotonic()
            self._signal_node()

    def _signal_node(self):
        self._signalled_at = time.monotonic()
        try:
            os.killpg(self._node.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    def _read_pipe(self, fd, name, decoders, emit):
        """Forwards what is in one pipe; returns False at its end."""
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return True
            if not data:
                emit(name, decoders[name].decode(b"", final=True))
                return False
            emit(name, decoders[name].decode(data))

    def _run(self, emit):
        """Forwards output to emit(name, text) until node answers.

        Returns the answer, or None if node died or was killed.
        """
        pipes = {self._node.stdout.fileno(): "stdout", self._node.stderr.fileno(): "stderr"}
        decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in pipes.values()}
        control = self._control.fileno()
        closed = False
        while not closed:
            wait = 0.5
            if self._interrupted_at is not None:
                now = time.monotonic()
                if now - self._interrupted_at > INTERRUPT_GRACE:
                    self._kill_node()
                    return None
                if now - self._signalled_at >= RESIGNAL:
                    self._signal_node()
                wait = RESIGNAL / 2
            exited = self._node.poll() is not None
            ready, _, _ = select.select(list(pipes) + [control], [], [], 0 if exited else wait)
            for fd in ready:
                if fd in pipes:
                    if not self._read_pipe(fd, pipes[fd], decoders, emit):
                        del pipes[fd]
                    continue
                data = self._control.recv(65536)
                if not data:  # node closed it, ending
                    closed = True
                self._replies += data
            nl = self._replies.find(b"\n")
            if nl >= 0:
                answer, self._replies = self._replies[:nl], self._replies[nl + 1:]
                # node wrote all the cell's output before its answer: what
                # is in the pipes now is the rest of it.
                for fd, name in pipes.items():
                    self._read_pipe(fd, name, decoders, emit)
                for name, d in decoders.items():
                    emit(name, d.decode(b"", final=True))
                return json.loads(answer)
            if exited and not ready:
                break
        # node is gone: show what it left in the pipes. A process it started
        # may hold them open for long, so read no more than is there.
        for fd, name in pipes.items():
            self._read_pipe(fd, name, decoders, emit)
        try:
            self._node.wait(timeout=INTERRUPT_GRACE)
        except subprocess.TimeoutExpired:
            pass  # it closed the socket but lives on: killed below
        self._exit_code = self._node.returncode
        self._kill_node()
        return None

    def do_execute(self, code, silent, store_history=True, user_expressions=None,
                   allow_stdin=False, **kwargs):
        def emit(name, text):
            if text and not silent:
                self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

        self._interrupted_at = None
        self._exit_code = None
        try:
            self._ensure_node()
        except (OSError, RuntimeError) as e:
            # A handler that raises sends no reply: the client would wait
            # for one until its timeout.
            self._kill_node()
            ename = "NodeUnavailable"
            evalue = "node could not start (%s); the next cell tries again" % e
            content = {"ename": ename, "evalue": evalue, "traceback": ["%s: %s" % (ename, evalue)]}
            if not silent:
                self.send_response(self.iopub_socket, "error", content)
            return dict(content, status="error", execution_count=self.execution_count)
        self._running = True
        try:
            self._control.sendall((json.dumps({"code": code, "file": "cell%d" % self.execution_count}) + "\n").encode())
            answer = self._run(emit)
        except OSError:  # node died before it read the cell
            answer = self._run(emit) if self._node else None
        finally:
            self._running = False

        if answer is not None:
            self._cwd = answer.get("cwd") or self._cwd
            self._env = answer.get("env") or self._env
            if answer["status"] == "ok":
                if answer.get("result") is not None and not silent:
                    self.send_response(self.iopub_socket, "execute_result", {
                        "execution_count": self.execution_count,
                        "data": {"text/plain": answer["result"]},
                        "metadata": {},
                    })
                return {"status": "ok", "execution_count": self.execution_count,
                        "payload": [], "user_expressions": {}}
            content = {"ename": answer["ename"], "evalue": answer["evalue"],
                       "traceback": answer["traceback"]}
        else:
            ename = "NodeRestarted"
            evalue = ("node did not stop after the interrupt and was killed"
                      if self._interrupted_at is not None
                      else "node exited with code %s" % self._exit_code) \
                + "; a new node starts with the next cell (state is lost, working dir and env are kept)"
            content = {"ename": ename, "evalue": evalue, "traceback": ["%s: %s" % (ename, evalue)]}
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        return dict(content, status="error", execution_count=self.execution_count)

    def do_shutdown(self, restart):
        self._kill_node()
        return {"status": "ok", "restart": restart}


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=JavaScriptKernel)
