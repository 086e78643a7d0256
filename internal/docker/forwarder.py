# The egress forwarder of a context with networking: programs in the
# container connect to the proxy address, 127.0.0.1:3128, and it passes each
# connection on to the daemon's egress proxy. It runs as the context's user,
# in one of two ways:
#
#   python3 -S -c FORWARDER socket SOCKET
#
# With TransportSocket, SOCKET is the daemon's proxy, in the context's
# sealed socket directory, and each connection goes to it. Once it listens,
# or finds a forwarder listening already (started before a restart of the
# daemon), it connects once and closes: that tells the daemon it is ready,
# since it can write nothing in the sealed directory.
#
#   python3 -S -c FORWARDER exec SOCKET
#
# With TransportExec, its stdin and stdout are the daemon's. It writes
# "ready" once it listens, then the number of each connection a program
# makes; the daemon starts a relay to SOCKET for it, which first sends that
# number back. When stdin ends, the daemon is gone, and so is the forwarder.
import asyncio, itertools, os, sys

mode, path = sys.argv[1], sys.argv[2]
waiting = {}  # connection number -> the future its relay fulfils
numbers = itertools.count(1)

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass

async def join(reader, writer, to_reader, to_writer):
    await asyncio.gather(pipe(reader, to_writer), pipe(to_reader, writer))
    to_writer.close()
    writer.close()

async def to_socket(reader, writer):
    try:
        to_reader, to_writer = await asyncio.open_unix_connection(path)
    except OSError:
        writer.close()
        return
    await join(reader, writer, to_reader, to_writer)

async def to_relay(reader, writer):
    n = next(numbers)
    relay = asyncio.get_running_loop().create_future()
    waiting[n] = relay
    sys.stdout.write("%d\n" % n)
    sys.stdout.flush()
    try:
        to_reader, to_writer = await asyncio.wait_for(relay, 30)
    except asyncio.TimeoutError:
        writer.close()
        return
    finally:
        waiting.pop(n, None)
    await join(reader, writer, to_reader, to_writer)

async def relay(reader, writer):
    try:
        relay = waiting.get(int(await reader.readline()))
    except ValueError:
        relay = None
    if relay is None or relay.done():
        writer.close()
        return
    relay.set_result((reader, writer))

async def serve_socket():
    try:
        server = await asyncio.start_server(to_socket, "127.0.0.1", 3128)
    except OSError:
        server = None
    _, ready = await asyncio.open_unix_connection(path)
    ready.close()
    if server:
        await server.serve_forever()

async def serve_exec():
    # The forwarder of a previous run of the daemon may not have gone yet.
    for _ in range(100):
        try:
            await asyncio.start_server(to_relay, "127.0.0.1", 3128)
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        sys.exit("127.0.0.1:3128 is taken")
    if os.path.exists(path):
        os.unlink(path)
    await asyncio.start_unix_server(relay, path)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.buffer.read)
    os._exit(0)

asyncio.run(serve_socket() if mode == "socket" else serve_exec())
