# Carries one connection to a context's server over this process's stdin
# and stdout, for a daemon that cannot reach the server itself: a Docker
# engine that shares no directory with the daemon's host, a cluster whose
# pods' addresses the daemon cannot reach. It is run through the exec API
# of the engine or of the API server, as the context's user, so it can
# reach nothing the context's own code cannot.
#
#   python3 -S -c RELAY TARGET
#
# TARGET is a unix socket's path (it has a "/") or host:port.
#
# Once connected it writes one byte, "+", so that the daemon tells a refused
# connection (the server is not up yet) from a quiet one; then it copies
# both ways until either side ends.
import os, socket, sys, threading

target = sys.argv[1]
try:
    if "/" in target:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(target)
    else:
        host, _, port = target.rpartition(":")
        sock = socket.create_connection((host.strip("[]"), int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
except (OSError, ValueError) as e:
    sys.stderr.write("connect %s: %s\n" % (target, e))
    sys.exit(1)

def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]

write_all(1, b"+")

def upstream():
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            sock.sendall(data)
        # The daemon closes its side only once it is done with the
        # connection, and a Jupyter server may keep its own open: end here,
        # or the exec would outlive the connection.
        sock.close()
        os._exit(0)
    except OSError as e:
        # Never half a relay: the daemon must see the connection go.
        sys.stderr.write("relay: %s\n" % e)
        os._exit(1)

threading.Thread(target=upstream, daemon=True).start()
try:
    while True:
        data = sock.recv(65536)
        if not data:
            break
        write_all(1, data)
except OSError:
    pass
