"""Interpreter runner for actorbus's Python executor.

Node starts this script (config JSON in argv[1]) and talks to it over one socket on a dedicated
fd, in frames of a 4-byte big-endian length followed by UTF-8 JSON. User code never sees that
channel: stdin is /dev/null, and during a call fds 1 and 2 point at per-call capture files (fresh
ones whenever something of an earlier call could still write to the old), so nothing user code
prints (markers, binary, gigabytes) can reach the channel or desync it.
Capture files, not pipes, because a crash must not lose what was printed before it: Node reads
them back after the process died.

Sessions are separate globals dicts keyed by the opaque keys Node assigns.
"""

import sys
import os


def main():
    import builtins
    import ctypes
    import faulthandler
    import io
    import json
    import linecache
    import resource
    import signal
    import struct
    import threading
    import time
    import traceback

    # Bind what the runner needs now: user code may monkeypatch these modules later, and the
    # runner must keep working for the other sessions sharing this interpreter.
    _loads, _dumps = json.loads, json.dumps
    _pack, _unpack_from = struct.pack, struct.unpack_from
    _read, _write, _dup2, _open, _close = os.read, os.write, os.dup2, os.open, os.close
    _pread, _fstat, _unlink, _getpid, _chdir = os.pread, os.fstat, os.unlink, os.getpid, os.chdir
    _ftruncate, _waitpid, _kill = os.ftruncate, os.waitpid, os.kill
    _monotonic = time.monotonic
    _get_ident, _enumerate_threads = threading.get_ident, threading.enumerate
    main_thread = threading.get_ident()
    _print_exception = traceback.print_exception
    _base_exception = BaseException

    cfg = _loads(sys.argv[1])
    chan = cfg["fd"]
    work_dir = cfg["workDir"]
    io_dir = cfg["ioDir"]
    cap = cfg["maxOutputBytes"]
    main_pid = _getpid()

    os.set_inheritable(chan, False)
    # Children of user code (os.fork, multiprocessing) must never write to the channel.
    os.register_at_fork(after_in_child=lambda: _safe_close(chan))

    libc = None
    subreaper = None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the Node process
        if libc.prctl(36, 1, 0, 0, 0) == 0:  # PR_SET_CHILD_SUBREAPER: orphans of user code come back here
            subreaper = (libc.prctl, ctypes.c_int(), ctypes.byref)
    except Exception:
        pass

    def contained():
        """True while every process user code starts stays below this one (PR_GET_CHILD_SUBREAPER
        still set: user code may clear it), so that having no child means nothing was left behind."""
        if subreaper is None:
            return False
        prctl, flag, byref = subreaper
        flag.value = 0
        return prctl(37, byref(flag), 0, 0, 0) == 0 and flag.value == 1
    if cfg.get("parentPid") and os.getppid() != cfg["parentPid"]:
        os._exit(0)  # Node died before the death signal was armed

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the file-size limit: EFBIG, not death
    limits = cfg.get("limits") or {}
    applied = {}
    for name, value in limits.items():
        res = getattr(resource, name, None)
        if res is None or value is None:
            continue
        try:
            resource.setrlimit(res, (value, value))
            applied[name] = value
        except (ValueError, OSError) as e:
            applied[name] = "failed: %s" % e
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a segfault must not leave core files
    except (ValueError, OSError):
        pass
    cpu_seconds = cfg.get("cpuSeconds")
    # kill(-1) below reaches every process this uid may signal: only ever do it under the
    # dedicated, unprivileged uid Node chose for this interpreter (as root it would kill the host).
    sweep_uid = cfg.get("sweepUid")
    sweep = isinstance(sweep_uid, int) and sweep_uid > 0 and os.getuid() == sweep_uid and os.geteuid() == sweep_uid

    devnull = _open(os.devnull, os.O_RDWR)
    _dup2(devnull, 0)
    _dup2(devnull, 1)
    _dup2(devnull, 2)
    _chdir(work_dir)

    class _Fd2:
        def fileno(self):
            return 2

    # A segfault during a call prints the Python stack into that call's stderr capture file.
    faulthandler.enable(file=_Fd2(), all_threads=True)

    def write_frame(obj):
        body = _dumps(obj, ensure_ascii=False).encode("utf-8", "replace")
        data = memoryview(_pack(">I", len(body)) + body)
        while data:
            n = _write(chan, data)
            data = data[n:]

    inbox = bytearray()

    def read_frame():
        # One read usually brings a whole request, length and body: one syscall, not two.
        while True:
            if len(inbox) >= 4:
                (n,) = _unpack_from(">I", inbox)
                if len(inbox) >= 4 + n:
                    body = inbox[4 : 4 + n]
                    del inbox[: 4 + n]
                    return body
                want = 4 + n - len(inbox)
            else:
                want = 4
            # 64 KiB asks unless a big frame needs more: CPython allocates the full ask on every read.
            chunk = _read(chan, min(max(want, 1 << 16), 1 << 20))
            if not chunk:
                os._exit(0)  # Node closed the channel: nothing more to do
            inbox.extend(chunk)

    class CappedBytes(io.RawIOBase):
        """sys.stdout.buffer: bytes straight to the capture fd, dropped beyond the cap."""

        def __init__(self, fd, foreign=frozenset()):
            self._fd = fd
            self.left = cap
            self.dropped = False
            # Threads left running by earlier calls (maybe of other sessions): their prints
            # must not land in this call's output.
            self._foreign = foreign

        def writable(self):
            return True

        def fileno(self):
            return self._fd

        def write(self, b):
            b = bytes(b)
            n = len(b)
            if n == 0 or (self._foreign and _get_ident() in self._foreign):
                return n
            if self.left <= 0:
                self.dropped = True
                return n
            if n > self.left:
                b = b[: self.left]
                self.dropped = True
            mv = memoryview(b)
            while mv:
                try:
                    w = _write(self._fd, mv)
                except OSError:
                    # EFBIG past the file-size limit, or user code closed the fd: drop the rest.
                    self.left = 0
                    self.dropped = True
                    break
                mv = mv[w:]
                self.left -= w
            return n

    class CappedText(io.TextIOBase):
        """sys.stdout / sys.stderr: unbuffered, so order with C-level and subprocess output holds."""

        def __init__(self, fd, foreign=frozenset()):
            self._raw = CappedBytes(fd, foreign)

        @property
        def buffer(self):
            return self._raw

        @property
        def encoding(self):
            return "utf-8"

        @property
        def errors(self):
            return "backslashreplace"

        def writable(self):
            return True

        def fileno(self):
            return self._raw.fileno()

        def isatty(self):
            return False

        def write(self, s):
            if not isinstance(s, str):
                raise TypeError("write() argument must be str, not %s" % type(s).__name__)
            raw = self._raw
            if raw._foreign and _get_ident() in raw._foreign:
                return len(s)
            if raw.left <= 0:
                # Past the cap: do not even encode (a 1 GB print must cost next to nothing).
                if s:
                    raw.dropped = True
                return len(s)
            # A char is at least one byte, so `left` chars are enough to fill the cap.
            raw.write(s[: raw.left].encode("utf-8", "backslashreplace"))
            if len(s) > raw.left:
                raw.dropped = True
            return len(s)

        def flush(self):
            pass

        @property
        def dropped(self):
            return self._raw.dropped

    def open_capture(name):
        path = os.path.join(io_dir, name)
        try:
            _unlink(path)  # a fresh inode per call: a stray writer from an old call cannot append here
        except FileNotFoundError:
            pass
        return _open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def read_capture(fd, writer):
        size = _fstat(fd).st_size
        data = _pread(fd, cap, 0) if size else b""
        return data.decode("utf-8", "replace"), size > cap or writer.dropped, size

    def new_globals():
        return {"__name__": "__main__", "__builtins__": dict(builtins.__dict__), "__doc__": None}

    def reap():
        """Reaps exited children; True if this process had any child, live or exited."""
        had = False
        while True:
            try:
                pid, _ = _waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return had
            had = True
            if pid == 0:
                return True

    sessions = {}
    stdin_null = [open(os.devnull, "r")]
    # The next call's capture files, made after each reply (off the caller's critical path:
    # creating files costs more than the rest of a trivial call), or the last call's, emptied,
    # when nothing but this thread can still hold them (see run()).
    captures = []

    def prepare_captures():
        if not captures:
            captures.append((open_capture("stdout"), open_capture("stderr")))

    # Where prints go between calls (from threads user code left running): nowhere.
    idle_out = CappedText(devnull)
    # The capture files of the call just answered, for finish_call().
    answered = []

    def finish_call():
        """What is left of a call once its reply is written (nobody waits for it; the next
        request is read only after it): sweep what user code left running, keep or drop the
        capture files."""
        out_fd, err_fd, out_size, err_size = answered.pop()
        # As the child subreaper, this process is an ancestor of every process user code left
        # running (daemons and setsid escapees included): with no child at all there is nothing
        # to sweep. kill(-1) walks the host's whole process table (~40 us a call here, more on
        # a busy host), so it runs only when there may be something to kill.
        had_children = reap()
        closed_in = contained()
        if sweep and (had_children or not closed_in):
            # This interpreter runs under a uid of its own: kill(-1) reaches exactly the processes
            # user code left behind, never anything else.
            try:
                _kill(-1, signal.SIGKILL)
            except OSError:
                pass
            reap()
        if closed_in and not had_children and len(_enumerate_threads()) == 1:
            # No other process or thread can hold these files: empty and reuse them rather than
            # make new ones (a fresh inode per call only matters against such stray writers).
            try:
                if out_size:
                    _ftruncate(out_fd, 0)
                if err_size:
                    _ftruncate(err_fd, 0)
                captures.append((out_fd, err_fd))
                return
            except OSError:
                pass
        _close(out_fd)
        _close(err_fd)

    def run(req):
        for k in req.get("drop") or ():
            sessions.pop(k, None)
        key = req.get("key")
        g = sessions.get(key) if key is not None else None
        if g is None:
            g = new_globals()
            if key is not None:
                sessions[key] = g
        src = req["code"]

        try:
            _chdir(work_dir)  # an earlier call's os.chdir must not leak into this one
        except OSError:
            pass
        out_fd, err_fd = captures.pop()
        _dup2(out_fd, 1)
        _dup2(err_fd, 2)
        foreign = frozenset(t.ident for t in _enumerate_threads() if t.ident != main_thread)
        out_w, err_w = CappedText(1, foreign), CappedText(2, foreign)
        if stdin_null[0].closed:
            stdin_null[0] = open(os.devnull, "r")
        sys.stdout, sys.stderr, sys.stdin = out_w, err_w, stdin_null[0]
        if cpu_seconds:
            try:
                ru = resource.getrusage(resource.RUSAGE_SELF)
                soft = int(ru.ru_utime + ru.ru_stime) + cpu_seconds
                resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.getrlimit(resource.RLIMIT_CPU)[1]))
            except (ValueError, OSError):
                pass

        ok, returncode, memory_error = True, 0, False
        t0 = _monotonic()
        try:
            linecache.cache["<code>"] = (len(src), None, src.splitlines(True), "<code>")
            code = compile(src, "<code>", "exec")
            exec(code, g)
        except SystemExit as e:
            c = e.code
            if c is None:
                returncode = 0
            elif isinstance(c, int):
                returncode = c & 0xFF if c >= 0 else c
            else:
                err_w.write(str(c) + "\n")
                returncode = 1
            ok = returncode == 0
        except _base_exception as e:
            ok, returncode = False, 1
            memory_error = isinstance(e, MemoryError)
            if _getpid() == main_pid:
                try:
                    tb = e.__traceback__
                    # Hide the runner's own frame; keep everything from the user's code down.
                    _print_exception(type(e), e, tb.tb_next if tb is not None else None, file=err_w)
                except _base_exception:
                    err_w.write("%s: %s\n" % (type(e).__name__, e))
            del e
        finally:
            if _getpid() != main_pid:
                # A child forked by user code finished the user's code: it must not answer.
                os._exit(0)
        duration_ms = (_monotonic() - t0) * 1000.0

        for name in ("stdout", "stderr"):
            try:
                getattr(sys, name).flush()  # user code may have swapped or deleted them
            except _base_exception:
                pass
        _dup2(devnull, 1)
        _dup2(devnull, 2)
        sys.stdout = sys.stderr = idle_out
        stdout, out_trunc, out_size = read_capture(out_fd, out_w)
        stderr, err_trunc, err_size = read_capture(err_fd, err_w)
        answered.append((out_fd, err_fd, out_size, err_size))
        return {
            "id": req["id"],
            "ok": ok,
            "returncode": returncode,
            "stdout": stdout,
            "stderr": stderr,
            "truncated": out_trunc or err_trunc,
            "memoryError": memory_error,
            "durationMs": duration_ms,
        }

    prepare_captures()
    write_frame({
        "op": "ready",
        "pid": main_pid,
        "uid": os.getuid(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "limits": applied,
    })

    while True:
        req = _loads(read_frame().decode("utf-8", "surrogatepass"))
        op = req.get("op")
        try:
            if op == "exec":
                reply = run(req)
            elif op == "drop":
                for k in req.get("keys") or ():
                    sessions.pop(k, None)
                reply = {"id": req["id"], "ok": True}
            else:
                reply = {"id": req.get("id"), "error": "unknown op %r" % (op,)}
        except _base_exception as e:  # the runner itself failed: let Node replace this process
            try:
                _dup2(devnull, 2)
            except OSError:
                pass
            os._exit(70)
        write_frame(reply)
        if answered:
            finish_call()
        prepare_captures()


def _safe_close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


if __name__ == "__main__":
    main()
