"""Starts an IPython kernel the way sandboxd needs it."""

import os
import site
import sys

from ipykernel import iostream, kernelapp

# Python puts the user site on sys.path only if it exists when Python starts.
# Make it and put it where Python would have, before the system's packages,
# so that what pip installs (into the user site: the image sets PIP_USER)
# can be imported, or shadow an older version, without a kernel restart.
_user_site = site.getusersitepackages()
os.makedirs(_user_site, exist_ok=True)
if _user_site not in sys.path:
    _system = [i for i, p in enumerate(sys.path) if p.endswith(("site-packages", "dist-packages"))]
    sys.path.insert(_system[0] if _system else len(sys.path), _user_site)

# When the container runs out of memory the kernel should be the process
# that goes: the Jupyter server then restarts it and the context lives on.
# Raising one's own score needs no privilege.
try:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")
except OSError:
    pass

# ipykernel buffers a stream between flushes and sends the buffer as one
# message, so print("x" * 10**9) would travel as one enormous message. Flush
# every megabyte so that no message is much larger; sandboxd keeps only the
# first --max-output bytes anyway.
_CHUNK = 1 << 20
_write = iostream.OutStream.write


def _write_in_chunks(self, string):
    if not isinstance(string, str):
        return _write(self, string)
    for i in range(0, len(string), _CHUNK):
        piece = string[i : i + _CHUNK]
        _write(self, piece)
        self._sandboxd_unflushed = getattr(self, "_sandboxd_unflushed", 0) + len(piece)
        if self._sandboxd_unflushed >= _CHUNK:
            self._sandboxd_unflushed = 0
            self.flush()
    return len(string)


iostream.OutStream.write = _write_in_chunks

if __name__ == "__main__":
    kernelapp.launch_new_instance()
