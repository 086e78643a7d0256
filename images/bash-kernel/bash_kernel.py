"""A small Jupyter kernel that runs code in one persistent bash process.

Debian packages no bash kernel (python3-metakernel is only a base class, and
its pexpect/pty wrapper merges stderr into stdout), so this is our own.

How it works: bash runs with its stdin, stdout and stderr on pipes. Each cell
is written to a file and sourced by a line sent to bash's stdin; the next line
prints an end marker with the exit status on stdout and on stderr. Output is
forwarded as `stream` messages as it arrives, up to the markers.
"""

import codecs
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time

from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel

# After an interrupt, a cell that has not stopped in this many seconds (it
# ignores SIGINT, say) gets its shell killed and a new one started.
INTERRUPT_GRACE = 5.0


class BashKernel(Kernel):
    implementation = "sandboxd_bash"
    implementation_version = "1.0"
    language = "bash"
    language_version = "5"
    language_info = {
        "name": "bash",
        "mimetype": "text/x-sh",
        "file_extension": ".sh",
        "codemirror_mode": "shell",
        "pygments_lexer": "bash",
    }
    banner = "bash"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._bash = None
        self._dir = tempfile.mkdtemp(prefix="bash-kernel-")
        self._cell = os.path.join(self._dir, "cell.sh")
        # Random, so no output can end a cell early by accident.
        self._token = "\x1e" + secrets.token_hex(12) + ":"
        self._running = False
        self._interrupted_at = None
        self._exit_code = None
        # Silent cells are set-up (sandboxd sends the working dir and env
        # that way): they are replayed in every new shell.
        self._setup = []

    def _start_bash(self):
        # Interactive (-i) because only an interactive bash, on SIGINT, drops
        # the whole command it is running (loops, functions and all) and goes
        # on reading its next line; a non-interactive one exits instead.
        # Its own session, so the kernel alone decides what SIGINT reaches it.
        # SIGINT must not be ignored here: bash would inherit that for good.
        # pre_handler_hook installed a handler, which exec resets to default.
        self._bash = subprocess.Popen(
            ["bash", "--noprofile", "--norc", "--noediting", "-i"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=dict(os.environ, TERM="dumb", PAGER="cat"),
        )
        # No prompts; no history file; `!` is not history expansion; the
        # marker function returns the cell's status so `$?` carries over.
        self._send(
            "PS1= PS2= PS0= PROMPT_COMMAND=; unset HISTFILE MAILCHECK; set +H +o history\n"
            "__sandboxd_mark() { printf '%%s%%d\\n' '%s' \"$1\"; printf '%%s\\n' '%s' >&2; return \"$1\"; }\n"
            % (self._token, self._token)
        )
        # Swallow what an interactive bash says at start ("no job control...").
        self._send("__sandboxd_mark 0\n")
        self._run(lambda name, text: None)
        for code in self._setup:
            self._source(code, lambda name, text: None)

    def _source(self, code, emit):
        """Runs code in bash and returns its exit status, as _run does."""
        with open(self._cell, "w") as f:
            f.write(code)
        try:
            # The cell reads /dev/null, not the pipe bash reads its commands from.
            self._send(". %s </dev/null\n__sandboxd_mark $?\n" % self._cell)
        except BrokenPipeError:
            pass  # bash just died: _run sees that
        return self._run(emit)

    def _send(self, text):
        self._bash.stdin.write(text.encode())
        self._bash.stdin.flush()

    def _alive(self):
        return self._bash is not None and self._bash.poll() is None

    def _kill_bash(self):
        if self._bash is None:
            return
        try:
            os.killpg(self._bash.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._bash.wait()
        for f in (self._bash.stdin, self._bash.stdout, self._bash.stderr):
            try:
                f.close()
            except OSError:
                pass
        self._bash = None

    def pre_handler_hook(self):
        # Instead of ipykernel's KeyboardInterrupt, which would skip the reply.
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, frame):
        # Jupyter interrupts a kernel by sending SIGINT to its process group;
        # pass it on to bash's group, which holds the running command.
        if self._running and self._alive():
            self._interrupted_at = time.monotonic()
            os.killpg(self._bash.pid, signal.SIGINT)

    def _run(self, emit):
        """Forwards output to emit(name, text) until both end markers came.

        Returns the cell's exit status, or None if bash died or was killed.
        """
        tok = self._token.encode()
        fds = {self._bash.stdout.fileno(): "stdout", self._bash.stderr.fileno(): "stderr"}
        bufs = {"stdout": b"", "stderr": b""}
        decoders = {n: codecs.getincrementaldecoder("utf-8")("replace") for n in bufs}
        status = None
        while fds:
            if self._interrupted_at and time.monotonic() - self._interrupted_at > INTERRUPT_GRACE:
                self._kill_bash()
                return None
            # Once bash is gone, read what is there and stop: a background
            # job it started may hold the pipes open for a long time.
            exited = self._bash.poll() is not None
            ready, _, _ = select.select(list(fds), [], [], 0 if exited else 0.5)
            for fd in ready:
                name = fds[fd]
                data = os.read(fd, 65536)
                if not data:  # bash exited: show what is left
                    emit(name, decoders[name].decode(bufs[name], final=True))
                    del fds[fd]
                    continue
                buf = bufs[name] + data
                i = buf.find(tok)
                if i >= 0:
                    end = buf.find(b"\n", i)
                    if end < 0:  # marker not complete yet
                        bufs[name] = buf
                        continue
                    out = buf[:i]
                    # An interactive bash writes a newline to stderr when
                    # SIGINT stops a command, as after ^C in a terminal: drop it.
                    if name == "stderr" and self._interrupted_at and out.endswith(b"\n"):
                        out = out[:-1]
                    emit(name, decoders[name].decode(out, final=True))
                    if name == "stdout":
                        status = int(buf[i + len(tok):end])
                    del fds[fd]
                    continue
                # Hold back a tail that may be the start of a marker.
                keep = next((k for k in range(min(len(tok) - 1, len(buf)), 0, -1)
                             if buf.endswith(tok[:k])), 0)
                if not keep and name == "stderr" and self._interrupted_at and buf.endswith(b"\n"):
                    keep = 1  # may be that newline
                emit(name, decoders[name].decode(buf[:len(buf) - keep]))
                bufs[name] = buf[len(buf) - keep:]
            if exited:
                break
        if not self._alive():
            self._exit_code = self._bash.returncode
            self._kill_bash()
            return None
        return status

    def do_execute(self, code, silent, store_history=True, user_expressions=None,
                   allow_stdin=False, **kwargs):
        def emit(name, text):
            if text and not silent:
                self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

        self._interrupted_at = None
        self._exit_code = None
        if not self._alive():
            self._start_bash()
        self._running = True
        try:
            status = self._source(code, emit)
        finally:
            self._running = False
        if silent and status == 0:
            self._setup.append(code)
        interrupted = self._interrupted_at is not None

        if status == 0:
            return {"status": "ok", "execution_count": self.execution_count,
                    "payload": [], "user_expressions": {}}
        if status is None:
            ename = "BashRestarted"
            evalue = ("bash did not stop after the interrupt and was killed" if interrupted
                      else "bash exited with code %s" % self._exit_code) \
                + "; a new shell starts with the next cell (state is lost)"
        elif interrupted:
            ename, evalue = "KeyboardInterrupt", "interrupted (exit code %d)" % status
        else:
            ename, evalue = "BashError", "exit code %d" % status
        content = {"ename": ename, "evalue": evalue, "traceback": ["%s: %s" % (ename, evalue)]}
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        return dict(content, status="error", execution_count=self.execution_count)

    def do_shutdown(self, restart):
        self._kill_bash()
        shutil.rmtree(self._dir, ignore_errors=True)
        return {"status": "ok", "restart": restart}


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=BashKernel)
